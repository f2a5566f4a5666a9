//! The console shell around every page: product name, the signed-in user,
//! the menus, flash messages and the restart-notification banner (SV-3).

use axum_messages::{Level, Messages};

use crate::domain::user::Role;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::changes::Pending;
use crate::store::users::ConfigState;

use super::paths;
use super::session::CurrentUser;

pub const PRODUCT: &str = "presence-gateway";

pub struct MenuItem {
    pub label: &'static str,
    pub href: &'static str,
}

pub struct MenuSection {
    pub title: &'static str,
    pub items: Vec<MenuItem>,
}

/// One entry of a menu catalogue. `href` is None until its page exists.
struct Entry {
    label: &'static str,
    href: Option<&'static str>,
}

struct Section {
    title: &'static str,
    entries: &'static [Entry],
}

const fn entry(label: &'static str, href: Option<&'static str>) -> Entry {
    Entry { label, href }
}

/// The console's menus, mirroring the unified-presence console. An entry
/// whose page is not built yet has no address and is not shown, so the
/// shell never links to a page that does not exist.
const CONSOLE_MENU: &[Section] = &[
    Section {
        title: "System",
        entries: &[
            entry("Service Parameters", Some(paths::SERVICE_PARAMETERS)),
            entry("Cluster Nodes", Some(paths::NODES)),
            entry("Presence Redundancy Groups", Some(paths::REDUNDANCY_GROUPS)),
            entry("Settings", Some(paths::SETTINGS)),
            entry("Locale Installation", Some(paths::LOCALES)),
            entry(
                "Security > Certificate Management",
                Some(paths::CERTIFICATES),
            ),
            entry("API Tokens", Some(paths::API_TOKENS)),
            entry("Audit Log", Some(paths::AUDIT_LOG)),
        ],
    },
    Section {
        title: "Presence",
        entries: &[entry("Gateways", Some(paths::GATEWAYS))],
    },
    Section {
        title: "User Management",
        entries: &[
            entry("End User", Some(paths::END_USERS)),
            entry("Application User", Some(paths::APP_USERS)),
        ],
    },
    Section {
        title: "Bulk Administration",
        entries: &[entry("Bulk Administration", Some(paths::BULK))],
    },
    Section {
        title: "Serviceability",
        entries: &[
            entry(
                "Control Center - Feature Services",
                Some(paths::CONTROL_CENTER),
            ),
            entry("Service Activation", Some(paths::SERVICE_ACTIVATION)),
        ],
    },
];

const USER_OPTIONS_MENU: &[Section] = &[Section {
    title: "User Options",
    entries: &[entry("User Options", Some(paths::USER_OPTIONS))],
}];

fn build_menu(catalogue: &[Section]) -> Vec<MenuSection> {
    catalogue
        .iter()
        .map(|section| MenuSection {
            title: section.title,
            items: section
                .entries
                .iter()
                .filter_map(|e| {
                    e.href.map(|href| MenuItem {
                        label: e.label,
                        href,
                    })
                })
                .collect(),
        })
        .filter(|section| !section.items.is_empty())
        .collect()
}

pub struct Flash {
    pub class: &'static str,
    pub text: String,
}

pub struct BannerChange {
    pub summary: String,
    pub actor: String,
    pub at: String,
    pub restart: String,
}

pub struct Shell {
    pub title: String,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub is_admin: bool,
    pub menu: Vec<MenuSection>,
    pub flashes: Vec<Flash>,
    pub banner: Vec<BannerChange>,
    pub banner_nodes: String,
    /// All pending changes; `banner` holds only the newest few.
    pub banner_total: i64,
    /// Whether any pending change requires, not only recommends, a restart.
    pub banner_required: bool,
    pub current: String,
}

/// Changes listed by name in the restart banner; the rest are counted.
const BANNER_CHANGES: i64 = 5;

impl Shell {
    /// A page for a signed-in user. Administrators see the restart banner.
    pub async fn new(
        state: &AppState,
        user: &CurrentUser,
        messages: Messages,
        title: &str,
        current: &str,
    ) -> AppResult<Shell> {
        let is_admin = user.role == Role::Admin;
        let pending = if is_admin && user.config.pending > 0 {
            banner(state, &user.config).await?
        } else {
            Pending::default()
        };
        let banner = pending
            .changes
            .into_iter()
            .map(|c| BannerChange {
                summary: c.summary,
                actor: c.actor,
                at: format_time(c.at),
                restart: c.restart,
            })
            .collect();
        Ok(Shell {
            title: title.to_owned(),
            user_id: Some(user.row.user_id.clone()),
            user_name: Some(user.row.display_name()),
            is_admin,
            menu: if is_admin {
                build_menu(CONSOLE_MENU)
            } else {
                build_menu(USER_OPTIONS_MENU)
            },
            flashes: flashes(messages),
            banner,
            banner_nodes: pending.nodes.join(", "),
            banner_total: if is_admin { user.config.pending } else { 0 },
            banner_required: pending.required,
            current: current.to_owned(),
        })
    }

    /// A page for someone not signed in (sign-in).
    pub fn anonymous(title: &str) -> Shell {
        Shell {
            title: title.to_owned(),
            user_id: None,
            user_name: None,
            is_admin: false,
            menu: Vec::new(),
            flashes: Vec::new(),
            banner: Vec::new(),
            banner_nodes: String::new(),
            banner_total: 0,
            banner_required: false,
            current: String::new(),
        }
    }

    /// Pending changes not listed by name in the banner.
    pub fn banner_more(&self) -> i64 {
        (self.banner_total - self.banner.len() as i64).max(0)
    }

    pub fn is_current(&self, href: &str) -> bool {
        self.current == href
    }
}

/// The banner's changes and lagging nodes, read again only when the
/// configuration state (generation, pending count, nodes) moved.
async fn banner(state: &AppState, config: &ConfigState) -> AppResult<Pending> {
    state
        .banner
        .get_or_load(config, || {
            crate::store::changes::pending(&state.pool, BANNER_CHANGES)
        })
        .await
}

fn flashes(messages: Messages) -> Vec<Flash> {
    messages
        .into_iter()
        .map(|m| Flash {
            class: match m.level {
                Level::Error => "flash flash-error",
                Level::Warning => "flash flash-warning",
                _ => "flash flash-success",
            },
            text: m.message,
        })
        .collect()
}

pub use crate::clock::format_time;

/// Renders a page with a status; a rendering failure becomes an AppError
/// (logged, with the plain error page) instead of a bare 500.
pub fn render<T: askama::Template>(
    status: axum::http::StatusCode,
    page: &T,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    Ok((status, axum::response::Html(page.render()?)).into_response())
}
