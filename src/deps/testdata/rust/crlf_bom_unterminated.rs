mod a;
use crate::a::B;
/* unterminated comment
mod never;