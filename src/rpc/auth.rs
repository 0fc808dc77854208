//! Bearer-token check for TCP clients.

use std::sync::Arc;

use tonic::{Request, Status};

/// Refuses requests without `authorization: Bearer <token>` matching the configured token.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Arc<[u8]>,
}

impl BearerAuth {
    /// Checks against `token`.
    pub fn new(token: &str) -> BearerAuth {
        BearerAuth {
            expected: Arc::from(format!("Bearer {token}").into_bytes()),
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get("authorization") {
            Some(v) if constant_time_eq(v.as_bytes(), &self.expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong bearer token")),
            None => Err(Status::unauthenticated(
                "a bearer token is required on TCP: send `authorization: Bearer <token>`",
            )),
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn checks_token() {
        let mut auth = BearerAuth::new("0123456789abcdef");
        assert!(auth.call(Request::new(())).is_err());
        let mut ok = Request::new(());
        ok.metadata_mut()
            .insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        assert!(auth.call(ok).is_ok());
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert("authorization", "Bearer 0123456789abcdeX".parse().unwrap());
        assert_eq!(
            auth.call(bad).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
