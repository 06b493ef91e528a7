//! The thin adapter from the generated `AuthService` trait to [`AuthCore`].

use cloudsec_proto::auth::v1::auth_service_server::AuthService;
use cloudsec_proto::auth::v1::{
    GetJwksRequest, Jwks, LoginRequest, LoginResponse, SignUpRequest, SignUpResponse,
};
use tonic::{Request, Response, Status};

use crate::core::AuthCore;

#[derive(Debug, Clone)]
pub struct AuthGrpc {
    core: AuthCore,
}

impl AuthGrpc {
    pub fn new(core: AuthCore) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn sign_up(
        &self,
        request: Request<SignUpRequest>,
    ) -> Result<Response<SignUpResponse>, Status> {
        let r = request.into_inner();
        let user = self.core.sign_up(&r.email, &r.password, &r.tenant).await?;
        Ok(Response::new(SignUpResponse {
            user_id: user.user_id,
            tenant: user.tenant,
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let r = request.into_inner();
        let token = self.core.login(&r.email, &r.password).await?;
        Ok(Response::new(LoginResponse {
            access_token: token.token,
            token_type: "Bearer".into(),
            expires_in: i32::try_from(token.expires_in.as_secs()).unwrap_or(i32::MAX),
        }))
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(self.core.jwks().clone()))
    }
}
