//! The one place where the store's refusals meet the forms: which field
//! each refusal belongs beside (`FORM` for the page's top), in the words of
//! the rule it broke.

use crate::domain::refusal::{
    GatewayRefusal, LocaleRefusal, ProxyRefusal, RedundancyRefusal, Refusal, TokenRefusal,
    UserRefusal,
};

use super::forms::{FORM, FieldErrors};

/// The field a refusal is shown beside.
pub fn field(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Gateway(r) => match r {
            GatewayRefusal::Mix(_)
            | GatewayRefusal::TypeChangedByEdit
            | GatewayRefusal::TypeChangeNotAlone { .. }
            | GatewayRefusal::TypeChangeNotOffered { .. } => "kind",
            GatewayRefusal::PasswordMissing => "password",
            GatewayRefusal::ClientSecretMissing => "client_secret",
            GatewayRefusal::DescriptionTaken => "description",
        },
        Refusal::User(r) => match r {
            UserRefusal::UserIdTaken => "user_id",
            UserRefusal::UnknownNode { .. } => "node",
            UserRefusal::NoGateway => "calendar",
            UserRefusal::DeleteSelf | UserRefusal::LastAdmin => FORM,
        },
        Refusal::Locale(r) => match r {
            LocaleRefusal::UnknownNode { .. } => "node",
            LocaleRefusal::BuiltIn { .. }
            | LocaleRefusal::AlreadyInstalled { .. }
            | LocaleRefusal::NotInstalled { .. }
            | LocaleRefusal::InUse { .. }
            | LocaleRefusal::NotOnEveryNode { .. } => "locale",
        },
        Refusal::Token(r) => match r {
            TokenRefusal::NameTaken => "name",
            TokenRefusal::AlreadyRevoked { .. } => FORM,
        },
        Refusal::Proxy(r) => match r {
            ProxyRefusal::PasswordMissing => "proxy_password",
            ProxyRefusal::UserMissing => "proxy_user",
        },
        Refusal::Redundancy(r) => match r {
            RedundancyRefusal::NameTaken => "name",
            RedundancyRefusal::UnknownNode { field, .. }
            | RedundancyRefusal::NodeInGroup { field, .. } => field,
        },
    }
}

/// The refusal placed beside its field in `errors`.
pub fn place(errors: &mut FieldErrors, refusal: &Refusal) {
    errors.set(field(refusal), refusal.to_string());
}
