//! The thin adapter from the generated `AuthService` trait to [`AuthCore`].

use cloudsec_proto::auth::v1::auth_service_server::AuthService;
use cloudsec_proto::auth::v1::{
    AdminAddUserToGroupRequest, AdminAddUserToGroupResponse, AdminCreateUserRequest,
    AdminCreateUserResponse, AdminDeleteUserRequest, AdminDeleteUserResponse,
    AdminDisableUserRequest, AdminDisableUserResponse, AdminEnableUserRequest,
    AdminEnableUserResponse, AdminGlobalSignOutRequest, AdminGlobalSignOutResponse,
    AdminRemoveUserFromGroupRequest, AdminRemoveUserFromGroupResponse, AdminResetUserMfaRequest,
    AdminResetUserMfaResponse, AssociateSoftwareTokenRequest, AssociateSoftwareTokenResponse,
    ChangePasswordRequest, ChangePasswordResponse, CompleteFederatedLoginRequest,
    ConfirmForgotPasswordRequest, ConfirmForgotPasswordResponse, ConfirmSignUpRequest,
    ConfirmSignUpResponse, DeleteSoftwareTokenRequest, DeleteSoftwareTokenResponse,
    ForgotPasswordRequest, ForgotPasswordResponse, GetJwksRequest, GetOpenIdConfigurationRequest,
    GlobalSignOutRequest, GlobalSignOutResponse, Group, Jwks, ListGroupsRequest,
    ListGroupsResponse, ListTokenRevocationsRequest, ListTokenRevocationsResponse, LoginRequest,
    LoginResponse, LogoutRequest, LogoutResponse, MfaMode, OpenIdConfiguration, RefreshRequest,
    RefreshResponse, ResendConfirmationCodeRequest, ResendConfirmationCodeResponse,
    RespondToAuthChallengeRequest, SetTenantMfaModeRequest, SetTenantMfaModeResponse,
    SignUpRequest, SignUpResponse, StartFederatedLoginRequest, StartFederatedLoginResponse,
    VerifySoftwareTokenRequest, VerifySoftwareTokenResponse,
};
use cloudsec_runtime::token::{AccessClaims, TokenError};
use tonic::{Request, Response, Status};

use crate::core::{AuthCore, LoginOutcome, Tokens};
use crate::error::AuthError;
use crate::mfa::Enroller;

#[derive(Debug, Clone)]
pub struct AuthGrpc {
    core: AuthCore,
}

impl AuthGrpc {
    pub fn new(core: AuthCore) -> Self {
        Self { core }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<AccessClaims, AuthError> {
        let token = bearer(request.metadata()).ok_or(TokenError::Missing)?;
        let claims = self.core.authenticate(token).await?;
        tracing::Span::current().record("sub", claims.base.sub.as_str());
        Ok(claims)
    }
}

fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address as the gateway forwards it; callers inside the
/// mesh are trusted workloads, and the gateway overwrites whatever a client
/// sends.
fn client_ip(metadata: &tonic::metadata::MetadataMap) -> Option<std::net::IpAddr> {
    metadata
        .get("x-cloudsec-client-ip")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A login's answer: tokens, or the challenge still to answer.
fn outcome_response(outcome: LoginOutcome) -> LoginResponse {
    match outcome {
        LoginOutcome::Tokens(tokens) => login_response(tokens),
        LoginOutcome::Challenge { name, session } => LoginResponse {
            challenge_name: name.to_owned(),
            session,
            ..LoginResponse::default()
        },
    }
}

fn login_response(tokens: Tokens) -> LoginResponse {
    LoginResponse {
        access_token: tokens.access.token,
        token_type: "Bearer".into(),
        expires_in: seconds(tokens.access.expires_in),
        refresh_token: tokens.refresh_token,
        id_token: tokens.id_token,
        ..LoginResponse::default()
    }
}

fn seconds(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
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

    async fn confirm_sign_up(
        &self,
        request: Request<ConfirmSignUpRequest>,
    ) -> Result<Response<ConfirmSignUpResponse>, Status> {
        let r = request.into_inner();
        self.core.confirm_sign_up(&r.email, &r.code).await?;
        Ok(Response::new(ConfirmSignUpResponse {}))
    }

    async fn resend_confirmation_code(
        &self,
        request: Request<ResendConfirmationCodeRequest>,
    ) -> Result<Response<ResendConfirmationCodeResponse>, Status> {
        let r = request.into_inner();
        self.core.resend_confirmation_code(&r.email).await?;
        Ok(Response::new(ResendConfirmationCodeResponse {}))
    }

    async fn forgot_password(
        &self,
        request: Request<ForgotPasswordRequest>,
    ) -> Result<Response<ForgotPasswordResponse>, Status> {
        let r = request.into_inner();
        self.core.forgot_password(&r.email).await?;
        Ok(Response::new(ForgotPasswordResponse {}))
    }

    async fn confirm_forgot_password(
        &self,
        request: Request<ConfirmForgotPasswordRequest>,
    ) -> Result<Response<ConfirmForgotPasswordResponse>, Status> {
        let r = request.into_inner();
        self.core
            .confirm_forgot_password(&r.email, &r.code, &r.password)
            .await?;
        Ok(Response::new(ConfirmForgotPasswordResponse {}))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let client = client_ip(request.metadata());
        let r = request.into_inner();
        let outcome = self
            .core
            .login(&r.email, &r.password, client, &r.client_id)
            .await?;
        Ok(Response::new(outcome_response(outcome)))
    }

    async fn start_federated_login(
        &self,
        request: Request<StartFederatedLoginRequest>,
    ) -> Result<Response<StartFederatedLoginResponse>, Status> {
        let r = request.into_inner();
        let (authorization_url, state) = self
            .core
            .start_federated_login(&r.provider, &r.client_id)
            .await?;
        Ok(Response::new(StartFederatedLoginResponse {
            authorization_url,
            state,
        }))
    }

    async fn complete_federated_login(
        &self,
        request: Request<CompleteFederatedLoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let r = request.into_inner();
        let outcome = self
            .core
            .complete_federated_login(&r.state, &r.code)
            .await?;
        Ok(Response::new(outcome_response(outcome)))
    }

    async fn respond_to_auth_challenge(
        &self,
        request: Request<RespondToAuthChallengeRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let r = request.into_inner();
        let tokens = self.core.respond_to_challenge(&r.session, &r.code).await?;
        Ok(Response::new(login_response(tokens)))
    }

    async fn associate_software_token(
        &self,
        request: Request<AssociateSoftwareTokenRequest>,
    ) -> Result<Response<AssociateSoftwareTokenResponse>, Status> {
        let enrolment = if request.get_ref().session.is_empty() {
            let caller = self.caller(&request).await?;
            self.core
                .associate_software_token(Enroller::Caller(&caller))
                .await?
        } else {
            self.core
                .associate_software_token(Enroller::Session(&request.get_ref().session))
                .await?
        };
        Ok(Response::new(AssociateSoftwareTokenResponse {
            secret_code: enrolment.secret_base32,
            otpauth_uri: enrolment.otpauth_uri,
            qr_code_svg: enrolment.qr_svg,
        }))
    }

    async fn verify_software_token(
        &self,
        request: Request<VerifySoftwareTokenRequest>,
    ) -> Result<Response<VerifySoftwareTokenResponse>, Status> {
        let code = request.get_ref().code.clone();
        let enrolled = if request.get_ref().session.is_empty() {
            let caller = self.caller(&request).await?;
            self.core
                .verify_software_token(Enroller::Caller(&caller), &code)
                .await?
        } else {
            self.core
                .verify_software_token(Enroller::Session(&request.get_ref().session), &code)
                .await?
        };
        Ok(Response::new(VerifySoftwareTokenResponse {
            recovery_codes: enrolled.recovery_codes,
            login: enrolled.tokens.map(login_response),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let groups = self.core.list_groups(&caller).await?;
        Ok(Response::new(ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|(name, member_ids, scopes)| Group {
                    name,
                    member_ids,
                    scopes,
                })
                .collect(),
        }))
    }

    async fn set_tenant_mfa_mode(
        &self,
        request: Request<SetTenantMfaModeRequest>,
    ) -> Result<Response<SetTenantMfaModeResponse>, Status> {
        let caller = self.caller(&request).await?;
        let mode = match MfaMode::try_from(request.get_ref().mode) {
            Ok(MfaMode::Off) => crate::mfa::MfaMode::Off,
            Ok(MfaMode::Optional) => crate::mfa::MfaMode::Optional,
            Ok(MfaMode::Required) => crate::mfa::MfaMode::Required,
            _ => {
                let mut v = cloudsec_runtime::FieldViolations::new();
                v.add("mode", "must be OFF, OPTIONAL or REQUIRED");
                return Err(AuthError::from(v).into());
            }
        };
        self.core.set_tenant_mfa_mode(&caller, mode).await?;
        Ok(Response::new(SetTenantMfaModeResponse {}))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let r = request.into_inner();
        let Tokens {
            access,
            id_token,
            refresh_token,
        } = self.core.refresh(&r.refresh_token).await?;
        Ok(Response::new(RefreshResponse {
            access_token: access.token,
            token_type: "Bearer".into(),
            expires_in: seconds(access.expires_in),
            refresh_token,
            id_token,
        }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        self.core
            .logout(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn global_sign_out(
        &self,
        request: Request<GlobalSignOutRequest>,
    ) -> Result<Response<GlobalSignOutResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core.global_sign_out(&caller).await?;
        Ok(Response::new(GlobalSignOutResponse {}))
    }

    async fn admin_global_sign_out(
        &self,
        request: Request<AdminGlobalSignOutRequest>,
    ) -> Result<Response<AdminGlobalSignOutResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core
            .admin_global_sign_out(&caller, &request.into_inner().user_id)
            .await?;
        Ok(Response::new(AdminGlobalSignOutResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        self.core
            .change_password(&caller, &r.previous_password, &r.proposed_password)
            .await?;
        Ok(Response::new(ChangePasswordResponse {}))
    }

    async fn admin_create_user(
        &self,
        request: Request<AdminCreateUserRequest>,
    ) -> Result<Response<AdminCreateUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let user = self
            .core
            .admin_create_user(&caller, &r.email, &r.password, r.tenant_admin)
            .await?;
        Ok(Response::new(AdminCreateUserResponse {
            user_id: user.user_id,
            tenant: user.tenant,
        }))
    }

    async fn admin_add_user_to_group(
        &self,
        request: Request<AdminAddUserToGroupRequest>,
    ) -> Result<Response<AdminAddUserToGroupResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        self.core
            .admin_set_group(&caller, &r.user_id, &r.group, true)
            .await?;
        Ok(Response::new(AdminAddUserToGroupResponse {}))
    }

    async fn admin_remove_user_from_group(
        &self,
        request: Request<AdminRemoveUserFromGroupRequest>,
    ) -> Result<Response<AdminRemoveUserFromGroupResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        self.core
            .admin_set_group(&caller, &r.user_id, &r.group, false)
            .await?;
        Ok(Response::new(AdminRemoveUserFromGroupResponse {}))
    }

    async fn admin_disable_user(
        &self,
        request: Request<AdminDisableUserRequest>,
    ) -> Result<Response<AdminDisableUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core
            .admin_set_disabled(&caller, &request.into_inner().user_id, true)
            .await?;
        Ok(Response::new(AdminDisableUserResponse {}))
    }

    async fn admin_enable_user(
        &self,
        request: Request<AdminEnableUserRequest>,
    ) -> Result<Response<AdminEnableUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core
            .admin_set_disabled(&caller, &request.into_inner().user_id, false)
            .await?;
        Ok(Response::new(AdminEnableUserResponse {}))
    }

    async fn admin_delete_user(
        &self,
        request: Request<AdminDeleteUserRequest>,
    ) -> Result<Response<AdminDeleteUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core
            .admin_delete_user(&caller, &request.into_inner().user_id)
            .await?;
        Ok(Response::new(AdminDeleteUserResponse {}))
    }

    async fn list_token_revocations(
        &self,
        request: Request<ListTokenRevocationsRequest>,
    ) -> Result<Response<ListTokenRevocationsResponse>, Status> {
        let since = request.into_inner().since;
        Ok(Response::new(self.core.token_revocations(since).await?))
    }

    async fn delete_software_token(
        &self,
        request: Request<DeleteSoftwareTokenRequest>,
    ) -> Result<Response<DeleteSoftwareTokenResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core
            .delete_software_token(&caller, &request.into_inner().code)
            .await?;
        Ok(Response::new(DeleteSoftwareTokenResponse {}))
    }

    async fn admin_reset_user_mfa(
        &self,
        request: Request<AdminResetUserMfaRequest>,
    ) -> Result<Response<AdminResetUserMfaResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.core
            .admin_reset_mfa(&caller, &request.into_inner().user_id)
            .await?;
        Ok(Response::new(AdminResetUserMfaResponse {}))
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(self.core.jwks().clone()))
    }

    async fn get_open_id_configuration(
        &self,
        _request: Request<GetOpenIdConfigurationRequest>,
    ) -> Result<Response<OpenIdConfiguration>, Status> {
        Ok(Response::new(self.core.openid_configuration()))
    }
}
