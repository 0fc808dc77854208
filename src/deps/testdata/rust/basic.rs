//! mod not_doc;
// mod commented;
/* block mod blocked; /* nested mod deeper; */ still mod inside; */
mod a;
pub mod b;
pub(crate) mod c;
#[path = "custom/d_impl.rs"]
mod d;
#[cfg_attr(feature = "x", path = "plat/e.rs")]
mod e;
#[cfg(test)]
mod tests {
    use super::*;
    mod nested_file;
}
mod inline {
    mod inner;
    use self::inner::X;
    use super::a::Y;
}
cfg_if::cfg_if! {
    if #[cfg(unix)] {
        mod unix;
    }
}
use std::collections::HashMap;
use crate::a::{b::C, d::{self, E}, *};
use ::serde::Serialize;
extern crate alloc;
const S: &str = "mod not_a_module; use fake::x;";
const R: &str = r#"mod raw_trap; " use also::fake; "#;
const B: &[u8] = br"include!(\"x\")";
let c = 'x'; let lt: &'static str = "";
include!("generated.rs");
include!(concat!(env!("OUT_DIR"), "/x.rs"));
macro_rules! m { ($x:ident) => { mod $x; use $crate::thing; } }
fn r#mod() {}
pub use self::b::Reexported as Alias;
