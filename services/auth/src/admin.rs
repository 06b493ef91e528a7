//! Administration by a tenant's admins: users (create, disable, enable,
//! delete, reset MFA, sign out) and groups, all within the admin's tenant.

use cloudsec_runtime::FieldViolations;
use cloudsec_runtime::token::AccessClaims;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, SqlErr};

use crate::core::{
    AuthCore, NewUser, check_group, normalize_email, remember_password, required, unique_to,
};
use crate::entity::{mfa_challenge, user, user_group};
use crate::error::{AuthError, Result};
use crate::mfa::remove_authenticator;

impl AuthCore {
    /// Ends every login of `user_id`, a user of the admin's own tenant.
    pub async fn admin_global_sign_out(&self, caller: &AccessClaims, user_id: &str) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        let revoked = self.end_all_logins(target.id, self.clock.now()).await?;
        tracing::info!(user_id = %target.id, admin = %caller.base.sub, revoked, "admin global sign-out");
        Ok(())
    }

    /// The user `user_id` of the caller's tenant, for a tenant admin; a user
    /// of another tenant is indistinguishable from a missing one.
    pub(crate) async fn tenant_user(
        &self,
        caller: &AccessClaims,
        user_id: &str,
    ) -> Result<user::Model> {
        if !caller.base.is_tenant_admin() {
            return Err(AuthError::NotAdmin);
        }
        required("user_id", user_id)?;
        let Ok(id) = uuid::Uuid::parse_str(user_id) else {
            let mut v = FieldViolations::new();
            v.add("user_id", "must be a user id (a UUID)");
            return Err(v.into());
        };
        user::Entity::find_by_id(id)
            .filter(user::Column::Tenant.eq(&caller.base.tenant))
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::UserNotFound(user_id.to_owned()))
    }

    /// An admin must not lock themself out of their tenant by mistake.
    pub(crate) fn not_self(caller: &AccessClaims, target: &user::Model, what: &str) -> Result<()> {
        if caller.base.sub == target.id.to_string() {
            let mut v = FieldViolations::new();
            v.add("user_id", format!("an admin cannot {what} themself"));
            return Err(v.into());
        }
        Ok(())
    }

    /// Adds a user to the caller's tenant (tenant admins only).
    pub async fn admin_create_user(
        &self,
        caller: &AccessClaims,
        email: &str,
        password: &str,
        tenant_admin: bool,
    ) -> Result<NewUser> {
        if !caller.base.is_tenant_admin() {
            return Err(AuthError::NotAdmin);
        }
        let mut v = FieldViolations::new();
        let email = normalize_email("email", email, &mut v);
        self.check_new_password("password", password, &email, &mut v);
        v.check()?;
        if user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(AuthError::EmailTaken);
        }
        let hash = self.hasher.hash(password.to_owned()).await?;
        let hash_copy = hash.clone();
        let id = uuid::Uuid::now_v7();
        let now = self.clock.now();
        let tenant = caller.base.tenant.clone();
        self.outbox
            .write(&self.db, async |txn, events| {
                user::ActiveModel {
                    id: Set(id),
                    email: Set(email.clone()),
                    tenant: Set(tenant.clone()),
                    password_hash: Set(hash),
                    is_tenant_admin: Set(tenant_admin),
                    created_at: Set(now),
                    disabled_at: Set(None),
                    // The admin vouches for the address.
                    confirmed_at: Set(Some(now)),
                    token_generation: Set(0),
                }
                .insert(txn)
                .await
                .map_err(|e| unique_to(e, AuthError::EmailTaken))?;
                remember_password(txn, id, &hash_copy, now).await?;
                events.push(crate::signup::signed_up(id, &tenant, &email, false, now));
                Ok::<_, AuthError>(())
            })
            .await?;
        tracing::info!(user_id = %id, %tenant, admin = %caller.base.sub, tenant_admin, "user created by an admin");
        Ok(NewUser {
            user_id: id.to_string(),
            tenant,
        })
    }

    /// Disables (and signs out) or enables a user of the caller's tenant.
    pub async fn admin_set_disabled(
        &self,
        caller: &AccessClaims,
        user_id: &str,
        disabled: bool,
    ) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        if disabled {
            Self::not_self(caller, &target, "disable")?;
        }
        let now = self.clock.now();
        let id = target.id;
        let mut row: user::ActiveModel = target.into();
        row.disabled_at = Set(disabled.then_some(now));
        row.update(&self.db).await?;
        if disabled {
            let revoked = self.end_all_logins(id, now).await?;
            tracing::info!(user_id = %id, admin = %caller.base.sub, revoked, "user disabled");
        } else {
            tracing::info!(user_id = %id, admin = %caller.base.sub, "user enabled");
        }
        Ok(())
    }

    /// Removes the authenticator, recovery codes and open challenges of a
    /// user of the caller's tenant, and ends their logins (the lost device
    /// may be in someone else's hands).
    pub async fn admin_reset_mfa(&self, caller: &AccessClaims, user_id: &str) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        Self::not_self(caller, &target, "reset the MFA of")?;
        let id = target.id;
        let had_authenticator = self
            .outbox
            .write(&self.db, async |txn, _| {
                let had = remove_authenticator(txn, id).await?;
                mfa_challenge::Entity::delete_many()
                    .filter(mfa_challenge::Column::UserId.eq(id))
                    .exec(txn)
                    .await?;
                Ok::<_, AuthError>(had)
            })
            .await?;
        let revoked = self.end_all_logins(id, self.clock.now()).await?;
        tracing::info!(user_id = %id, admin = %caller.base.sub, had_authenticator, revoked, "user mfa reset");
        Ok(())
    }

    /// Adds (or removes) a user of the caller's tenant to (from) `group`;
    /// idempotent. Tokens list the change from the next one on.
    pub async fn admin_set_group(
        &self,
        caller: &AccessClaims,
        user_id: &str,
        group: &str,
        member: bool,
    ) -> Result<()> {
        check_group(group)?;
        let target = self.tenant_user(caller, user_id).await?;
        if member {
            let row = user_group::ActiveModel {
                user_id: Set(target.id),
                group_name: Set(group.to_owned()),
                created_at: Set(self.clock.now()),
            };
            match user_group::Entity::insert(row).exec(&self.db).await {
                Ok(_) => {}
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            user_group::Entity::delete_many()
                .filter(user_group::Column::UserId.eq(target.id))
                .filter(user_group::Column::GroupName.eq(group))
                .exec(&self.db)
                .await?;
        }
        tracing::info!(user_id = %target.id, group, member, admin = %caller.base.sub, "group membership");
        Ok(())
    }

    /// The groups of the caller's tenant: name, member ids and the scopes
    /// they grant, sorted by name (tenant admins).
    pub async fn list_groups(
        &self,
        caller: &AccessClaims,
    ) -> Result<Vec<(String, Vec<String>, Vec<String>)>> {
        if !caller.base.is_tenant_admin() {
            return Err(AuthError::NotAdmin);
        }
        let members: Vec<uuid::Uuid> = user::Entity::find()
            .filter(user::Column::Tenant.eq(&caller.base.tenant))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        let mut groups: std::collections::BTreeMap<String, Vec<String>> =
            std::collections::BTreeMap::new();
        for row in user_group::Entity::find()
            .filter(user_group::Column::UserId.is_in(members))
            .all(&self.db)
            .await?
        {
            groups
                .entry(row.group_name)
                .or_default()
                .push(row.user_id.to_string());
        }
        Ok(groups
            .into_iter()
            .map(|(name, mut ids)| {
                ids.sort();
                let scopes = self
                    .sessions
                    .group_scopes
                    .get(&name)
                    .cloned()
                    .unwrap_or_default();
                (name, ids, scopes)
            })
            .collect())
    }

    /// Deletes a user of the caller's tenant with every login of theirs.
    pub async fn admin_delete_user(&self, caller: &AccessClaims, user_id: &str) -> Result<()> {
        let target = self.tenant_user(caller, user_id).await?;
        Self::not_self(caller, &target, "delete")?;
        let id = target.id;
        self.end_all_logins(id, self.clock.now()).await?;
        user::Entity::delete_by_id(id).exec(&self.db).await?;
        tracing::info!(user_id = %id, admin = %caller.base.sub, "user deleted");
        Ok(())
    }
}
