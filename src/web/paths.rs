//! Every console path, named once. Routers, redirects, the menu and
//! templates take them from here; a path with an id is built by a function
//! next to its route pattern.

pub const HOME: &str = "/";
pub const LOGIN: &str = "/login";
pub const LOGOUT: &str = "/logout";
pub const ACCOUNT_PASSWORD: &str = "/account/password";
pub const HEALTHZ: &str = "/healthz";
/// EN-8: the Prometheus scrape page.
pub const METRICS: &str = "/metrics";

pub const STATIC_CSS: &str = "/static/app.css";
pub const STATIC_FAVICON: &str = "/static/favicon.svg";

pub const API_SESSION: &str = "/api/v1/session";
pub const API_PRESENCE: &str = "/api/v1/presence/{userid}";
pub const API_PRESENCE_STREAM: &str = "/api/v1/presence/stream";
/// Everything under `/api/` answers JSON, errors included.
pub const API_PREFIX: &str = "/api/";

pub const GATEWAYS: &str = "/presence/gateways";
pub const GATEWAY_NEW: &str = "/presence/gateways/new";
pub const GATEWAYS_TROUBLESHOOT: &str = "/presence/gateways/troubleshoot";
pub const GATEWAY: &str = "/presence/gateways/{id}";
pub const GATEWAY_TROUBLESHOOT: &str = "/presence/gateways/{id}/troubleshoot";
pub const GATEWAY_DELETE: &str = "/presence/gateways/{id}/delete";
pub const GATEWAY_TYPE: &str = "/presence/gateways/{id}/type";

pub const END_USERS: &str = "/users/end-users";
pub const END_USER_NEW: &str = "/users/end-users/new";
pub const END_USER: &str = "/users/end-users/{id}";
pub const END_USER_DELETE: &str = "/users/end-users/{id}/delete";
pub const END_USER_PASSWORD: &str = "/users/end-users/{id}/password";

pub const APP_USERS: &str = "/users/application-users";
pub const APP_USER_NEW: &str = "/users/application-users/new";
pub const APP_USER_DELETE: &str = "/users/application-users/{id}/delete";
pub const APP_USER_PASSWORD: &str = "/users/application-users/{id}/password";

pub const BULK: &str = "/bulk";
pub const BULK_IMPORT: &str = "/bulk/import";
pub const BULK_IMPORT_APPLY: &str = "/bulk/import/apply";
pub const BULK_EXPORT: &str = "/bulk/export";
pub const BULK_LOCALES: &str = "/bulk/locales";

pub const SERVICE_PARAMETERS: &str = "/system/service-parameters";
pub const NODES: &str = "/system/nodes";
pub const SETTINGS: &str = "/system/settings";
pub const LOCALES: &str = "/system/locales";
pub const CERTIFICATES: &str = "/system/certificates";
pub const CERTIFICATE_IMPORT: &str = "/system/certificates/import";
pub const CERTIFICATE_IMPORT_ACCEPT: &str = "/system/certificates/import/accept";
pub const CERTIFICATE_DELETE: &str = "/system/certificates/{id}/delete";
pub const API_TOKENS: &str = "/system/api-tokens";
pub const API_TOKEN_REVOKE: &str = "/system/api-tokens/{id}/revoke";
pub const AUDIT_LOG: &str = "/system/audit-log";
pub const REDUNDANCY_GROUPS: &str = "/system/presence-redundancy-groups";
pub const REDUNDANCY_GROUP_NEW: &str = "/system/presence-redundancy-groups/new";
pub const REDUNDANCY_GROUP: &str = "/system/presence-redundancy-groups/{id}";
pub const REDUNDANCY_GROUP_DELETE: &str = "/system/presence-redundancy-groups/{id}/delete";

pub const CONTROL_CENTER: &str = "/serviceability/control-center";
pub const SERVICE_ACTIVATION: &str = "/serviceability/service-activation";

pub const USER_OPTIONS: &str = "/user-options";
pub const USER_OPTIONS_CALENDAR: &str = "/user-options/calendar";
pub const USER_OPTIONS_LOCALE: &str = "/user-options/locale";

/// A route pattern with its `{id}` filled in.
pub fn with_id(pattern: &str, id: i64) -> String {
    pattern.replacen("{id}", &id.to_string(), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fill_the_pattern() {
        assert_eq!(with_id(GATEWAY, 7), "/presence/gateways/7");
        assert_eq!(
            with_id(END_USER_PASSWORD, 12),
            "/users/end-users/12/password"
        );
    }
}
