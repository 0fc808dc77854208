use a::b::{c, d::{e, f as g}, self};
use {x::y, z};
pub(in crate::m) use crate::deep::{nested::{self as n, Leaf}};
mod outer {
    mod mid {
        use super::super::top::T;
        use super::sibling::S;
        use self::child::C;
        use crate::abs::A;
    }
}
let s = "/* not a comment start";
mod after_string;
let lt = 'a'; let ch = '\''; let u = '\u{1F600}';
mod after_chars;
