//! Why a write was refused by a rule the store checks inside its
//! transaction: one enum per aggregate, holding the facts of the refusal,
//! never a form field's name or a sentence. `web/` words each one and
//! places it beside its field, in one place (`web::refusals`).

use std::fmt;

use super::gateway::Mix;
use super::locale::Locale;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Gateway(GatewayRefusal),
    User(UserRefusal),
    Locale(LocaleRefusal),
    Token(TokenRefusal),
    Proxy(ProxyRefusal),
    Redundancy(RedundancyRefusal),
}

/// Presence gateways (GW-2..GW-7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayRefusal {
    /// GW-3: WebDAV and EWS gateways cannot be mixed.
    Mix(Mix),
    /// No password typed and none stored for this kind yet.
    PasswordMissing,
    /// Another gateway has this description.
    DescriptionTaken,
    /// Editing tried to change the type (Change Type does that).
    TypeChangedByEdit,
    /// Change Type needs the gateway to be the only one.
    TypeChangeNotAlone { total: i64 },
    /// Change Type offers only the next or previous step (GW-5, GR-2).
    TypeChangeNotOffered {
        from: super::gateway::GatewayKind,
        to: super::gateway::GatewayKind,
    },
    /// No client secret typed and none stored for Microsoft 365 yet.
    ClientSecretMissing,
}

/// Users: end users, administrators, their switches and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRefusal {
    /// Another user has this User ID.
    UserIdTaken,
    /// No cluster node has this name.
    UnknownNode { node: String },
    /// An administrator cannot delete their own account.
    DeleteSelf,
    /// The only administrator cannot be deleted.
    LastAdmin,
    /// Calendar presence needs a presence gateway (US-2).
    NoGateway,
}

/// Locales installed per node (LO-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocaleRefusal {
    /// English is built in: never installed or uninstalled.
    BuiltIn {
        locale: Locale,
    },
    UnknownNode {
        node: String,
    },
    AlreadyInstalled {
        locale: Locale,
        node: String,
    },
    NotInstalled {
        locale: Locale,
        node: String,
    },
    /// Uninstalling a locale that users have.
    InUse {
        locale: Locale,
        users: i64,
    },
    /// A user locale must be installed on every node; these lack it.
    NotOnEveryNode {
        locale: Locale,
        missing: Vec<String>,
    },
}

/// API tokens (EN-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// An unrevoked token already has this name (case aside).
    NameTaken,
    /// The token was revoked already (by someone else, or in another tab).
    AlreadyRevoked { by: String },
}

impl From<GatewayRefusal> for Refusal {
    fn from(r: GatewayRefusal) -> Refusal {
        Refusal::Gateway(r)
    }
}

impl From<UserRefusal> for Refusal {
    fn from(r: UserRefusal) -> Refusal {
        Refusal::User(r)
    }
}

impl From<LocaleRefusal> for Refusal {
    fn from(r: LocaleRefusal) -> Refusal {
        Refusal::Locale(r)
    }
}

/// The Outbound Proxy of System > Settings (GR-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRefusal {
    /// A Proxy User without a typed password, and none stored for them.
    PasswordMissing,
    /// A Proxy Password without a Proxy User.
    UserMissing,
}

impl From<ProxyRefusal> for Refusal {
    fn from(r: ProxyRefusal) -> Refusal {
        Refusal::Proxy(r)
    }
}

impl fmt::Display for ProxyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyRefusal::PasswordMissing => {
                "Enter the Proxy Password: none is stored for this user."
            }
            ProxyRefusal::UserMissing => "Enter the Proxy User the password belongs to.",
        })
    }
}

/// Presence Redundancy Groups (CL-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedundancyRefusal {
    /// Another group has this name (case aside).
    NameTaken,
    /// No cluster node has this name; `field` is the form's.
    UnknownNode { field: &'static str, node: String },
    /// The node is a member of another group already.
    NodeInGroup {
        field: &'static str,
        node: String,
        group: String,
    },
}

impl From<RedundancyRefusal> for Refusal {
    fn from(r: RedundancyRefusal) -> Refusal {
        Refusal::Redundancy(r)
    }
}

impl fmt::Display for RedundancyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedundancyRefusal::NameTaken => {
                f.write_str("Another group has this name: names tell the groups apart.")
            }
            RedundancyRefusal::UnknownNode { node, .. } => {
                write!(f, "No cluster node is named {node}.")
            }
            RedundancyRefusal::NodeInGroup { node, group, .. } => write!(
                f,
                "{node} is in the group {group} already: a node belongs to one group at most."
            ),
        }
    }
}

impl From<TokenRefusal> for Refusal {
    fn from(r: TokenRefusal) -> Refusal {
        Refusal::Token(r)
    }
}

// The wording of each rule, for whoever shows it (web pages, bulk reports,
// the shell).

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Gateway(r) => r.fmt(f),
            Refusal::User(r) => r.fmt(f),
            Refusal::Locale(r) => r.fmt(f),
            Refusal::Token(r) => r.fmt(f),
            Refusal::Proxy(r) => r.fmt(f),
            Refusal::Redundancy(r) => r.fmt(f),
        }
    }
}

impl fmt::Display for GatewayRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayRefusal::Mix(mix) => mix.fmt(f),
            GatewayRefusal::PasswordMissing => {
                f.write_str("Enter the account password, and again to confirm it.")
            }
            GatewayRefusal::DescriptionTaken => f.write_str(
                "Another gateway already has this description: descriptions tell gateways apart.",
            ),
            GatewayRefusal::TypeChangedByEdit => {
                f.write_str("The type is changed with Change Type, not by editing.")
            }
            GatewayRefusal::TypeChangeNotAlone { total } => write!(
                f,
                "The type can only be changed while this is the only gateway; there are \
                 {total}. Delete the others first."
            ),
            GatewayRefusal::TypeChangeNotOffered { from, to } => write!(
                f,
                "A {} gateway cannot change in place to {}: change it to {} instead.",
                from.label(),
                to.label(),
                from.change_targets()
                    .iter()
                    .map(|k| k.label())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            GatewayRefusal::ClientSecretMissing => {
                f.write_str("Enter the client secret, and again to confirm it.")
            }
        }
    }
}

impl fmt::Display for UserRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRefusal::UserIdTaken => f.write_str("A user with this User ID already exists."),
            UserRefusal::UnknownNode { node } => write!(
                f,
                "There is no cluster node named {node:?}: choose one from the list."
            ),
            UserRefusal::DeleteSelf => f.write_str(
                "You cannot delete your own account: sign in as another administrator to do \
                 that.",
            ),
            UserRefusal::LastAdmin => f.write_str(
                "This is the only administrator: create another before deleting this one.",
            ),
            UserRefusal::NoGateway => f.write_str("no presence gateway has been configured"),
        }
    }
}

impl fmt::Display for LocaleRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocaleRefusal::BuiltIn { locale } => write!(
                f,
                "{} is built in: it is installed on every node and cannot be installed or \
                 uninstalled.",
                locale.label()
            ),
            LocaleRefusal::UnknownNode { node } => {
                write!(f, "No node named {node} is registered.")
            }
            LocaleRefusal::AlreadyInstalled { locale, node } => {
                write!(f, "{} is already installed on {node}.", locale.label())
            }
            LocaleRefusal::NotInstalled { locale, node } => {
                write!(f, "{} is not installed on {node}.", locale.label())
            }
            LocaleRefusal::InUse { locale, users } => write!(
                f,
                "{} is the User Locale of {}: a user locale must stay installed on every node. \
                 Give those users another locale first.",
                locale.label(),
                super::count(*users, "user")
            ),
            LocaleRefusal::NotOnEveryNode { locale, missing } => write!(
                f,
                "{} is not installed on {}: install it on every node first (System > Locale \
                 Installation).",
                locale.label(),
                missing.join(", ")
            ),
        }
    }
}

impl fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRefusal::NameTaken => {
                f.write_str("Another token in use has this name: names tell the callers apart.")
            }
            TokenRefusal::AlreadyRevoked { by } => {
                write!(f, "This token was already revoked by {by}.")
            }
        }
    }
}
