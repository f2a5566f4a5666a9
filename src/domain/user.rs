//! User identities, roles and password rules.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};

/// The administrator the first start creates (SY-1).
pub const FIRST_ADMIN: &str = "admin";

/// A user ID as stored: trimmed, 1 to 64 characters of letters, digits and
/// `. _ - @`. Comparison in the store is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Err("Enter a User ID.".to_owned());
        }
        if value.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "A User ID is at most {} characters long.",
                Self::MAX_LEN
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
        {
            return Err(format!(
                "A User ID may contain letters, digits and . _ - @ only, not {bad:?}."
            ));
        }
        Ok(UserId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key sign-in throttling counts failures under: the user ID as typed,
/// trimmed and lower-cased, whether or not such a user exists (SY-3).
pub fn throttle_key(typed: &str) -> String {
    typed.trim().to_lowercase()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    EndUser,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::EndUser => "end_user",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "admin" => Some(Role::Admin),
            "end_user" => Some(Role::EndUser),
            _ => None,
        }
    }

    /// Where a user lands after signing in (SY-3).
    pub fn landing_path(self) -> &'static str {
        match self {
            Role::Admin => "/",
            Role::EndUser => "/user-options",
        }
    }
}

/// The 10,000 most common passwords, most common first, one a line: the
/// `passwords` frequency list of zxcvbn 4.4.2 (MIT), see
/// `src/domain/common-passwords.md`. Embedded so the rule needs no file at run
/// time.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Built once on first use: a lookup per new password must not scan 10,000
/// lines. The list is lowercase, so keys are lowercased to compare.
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect());

/// Whether `password` is on the common list, ignoring case (a capital first
/// letter does not make "Password1" any harder to guess).
pub fn is_common_password(password: &str) -> bool {
    COMMON.contains(password.to_lowercase().as_str())
}

/// A new password that passes the policy (ASVS 2.1): 12 to 128 characters
/// (counted as characters, not bytes), spaces allowed, no composition rules,
/// not one of the 10,000 most common passwords and not containing the user's
/// ID, both ignoring case. Each refusal names the rule that failed. Held as a
/// secret so it is never logged.
#[derive(Debug, Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    pub const MIN_LEN: usize = 12;
    pub const MAX_LEN: usize = 128;
    pub const TOO_SHORT: &'static str = "Use at least 12 characters.";
    pub const TOO_LONG: &'static str = "Use at most 128 characters.";
    pub const COMMON: &'static str =
        "This password is one of the 10,000 most common; choose another.";
    pub const CONTAINS_USER_ID: &'static str = "The password must not contain the user ID.";
    pub const MISMATCH: &'static str = "The password and its confirmation do not match.";

    /// `user_id` is the ID the password is for, as entered or stored; an
    /// empty one (not yet known) skips that rule.
    pub fn parse(password: &str, confirmation: &str, user_id: &str) -> Result<Self, String> {
        let length = password.chars().count();
        if length < Self::MIN_LEN {
            return Err(Self::TOO_SHORT.to_owned());
        }
        if length > Self::MAX_LEN {
            return Err(Self::TOO_LONG.to_owned());
        }
        if is_common_password(password) {
            return Err(Self::COMMON.to_owned());
        }
        let user_id = user_id.trim().to_lowercase();
        if !user_id.is_empty() && password.to_lowercase().contains(&user_id) {
            return Err(Self::CONTAINS_USER_ID.to_owned());
        }
        if password != confirmation {
            return Err(Self::MISMATCH.to_owned());
        }
        Ok(NewPassword(SecretString::from(password.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Where to go after signing in, if the `next` value is a path on this site.
/// Anything that could leave the origin (`//host`, `/\host`, a scheme) is
/// dropped, so a crafted link cannot turn sign-in into an open redirect.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && next.len() <= 2048;
    ok.then_some(next)
}

/// *First Name* or *Last Name*: trimmed, at most 64 characters, no control
/// characters. Either may be empty (bulk loads create users without names).
/// U+10FFFF is refused too: "begins with" searches use it as the upper bound
/// of a prefix range (see `Search::prefix_range`), so no name may hold it.
pub fn parse_person_name(raw: &str, label: &str) -> Result<String, String> {
    const MAX: usize = 64;
    let value = raw.trim();
    if value.chars().count() > MAX {
        return Err(format!("The {label} is at most {MAX} characters long."));
    }
    if value.chars().any(|c| c.is_control() || c == char::MAX) {
        return Err(format!("The {label} may not contain control characters."));
    }
    Ok(value.to_owned())
}

/// *Mailbox*: the user's Exchange mailbox address, optional. The address
/// rules are the gateway's Test Mailbox rules; only the message differs.
pub fn parse_user_mailbox(raw: &str) -> Result<Option<String>, String> {
    crate::domain::gateway::Mailbox::parse_optional(crate::domain::gateway::GatewayKind::Ews, raw)
        .map(|m| m.map(|m| m.as_str().to_owned()))
        .map_err(|_| {
            "Enter the mailbox as an e-mail address, such as jane.doe@example.com, or leave it \
             empty."
                .to_owned()
        })
}

/// Which column Find and List searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    UserId,
    FirstName,
    LastName,
}

impl SearchField {
    pub const ALL: [SearchField; 3] = [
        SearchField::UserId,
        SearchField::FirstName,
        SearchField::LastName,
    ];

    /// The form value, which is also the column's name in `users` and
    /// `users_fts`.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchField::UserId => "user_id",
            SearchField::FirstName => "first_name",
            SearchField::LastName => "last_name",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SearchField::UserId => "User ID",
            SearchField::FirstName => "First Name",
            SearchField::LastName => "Last Name",
        }
    }

    /// Unknown values fall back to the user ID, as the form's first choice.
    pub fn parse(raw: &str) -> SearchField {
        SearchField::ALL
            .into_iter()
            .find(|f| f.as_str() == raw)
            .unwrap_or(SearchField::UserId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMatch {
    BeginsWith,
    Contains,
}

impl SearchMatch {
    pub const ALL: [SearchMatch; 2] = [SearchMatch::BeginsWith, SearchMatch::Contains];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMatch::BeginsWith => "begins",
            SearchMatch::Contains => "contains",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SearchMatch::BeginsWith => "begins with",
            SearchMatch::Contains => "contains",
        }
    }

    pub fn parse(raw: &str) -> SearchMatch {
        SearchMatch::ALL
            .into_iter()
            .find(|m| m.as_str() == raw)
            .unwrap_or(SearchMatch::BeginsWith)
    }
}

/// A Find and List search that the indexes can answer: empty (every end
/// user), a prefix (the NOCASE indexes) or a substring of at least three
/// characters (the trigram index, which cannot look for less).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    All,
    BeginsWith(SearchField, String),
    Contains(SearchField, String),
}

/// The trigram index needs three characters; fewer would mean a scan.
pub const CONTAINS_MIN_CHARS: usize = 3;
pub const SEARCH_TOO_SHORT: &str = "Enter at least 3 characters to search within names.";
/// Longer search text cannot match: no user ID or name is longer.
const SEARCH_MAX_CHARS: usize = 64;

impl Search {
    pub fn parse(field: SearchField, how: SearchMatch, text: &str) -> Result<Search, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Search::All);
        }
        if text.chars().count() > SEARCH_MAX_CHARS {
            return Err(format!(
                "Search for at most {SEARCH_MAX_CHARS} characters: no user ID or name is longer."
            ));
        }
        match how {
            SearchMatch::BeginsWith => Ok(Search::BeginsWith(field, text.to_owned())),
            SearchMatch::Contains if text.chars().count() < CONTAINS_MIN_CHARS => {
                Err(SEARCH_TOO_SHORT.to_owned())
            }
            SearchMatch::Contains => Ok(Search::Contains(field, text.to_owned())),
        }
    }

    /// The half-open NOCASE range `[low, high)` holding every value that
    /// begins with `prefix`, ignoring ASCII case as SQLite's NOCASE does.
    /// NOCASE compares bytes after folding ASCII letters, so the values
    /// beginning with the folded prefix sort from the prefix itself up to
    /// the prefix followed by the largest character, which no stored value
    /// holds (`parse_person_name` refuses it, user IDs are alphanumeric).
    /// A range keeps the index usable whatever the text, where `LIKE 'x%'`
    /// needs an escape clause and loses the index on some patterns.
    pub fn prefix_range(prefix: &str) -> (String, String) {
        let low = prefix.to_ascii_lowercase();
        let mut high = low.clone();
        high.push(char::MAX);
        (low, high)
    }

    /// The text as one FTS5 phrase: in double quotes, inner quotes doubled,
    /// so nothing the user types is read as query syntax. With the trigram
    /// tokenizer a phrase matches wherever it occurs as a substring.
    pub fn fts_phrase(text: &str) -> String {
        format!("\"{}\"", text.replace('"', "\"\""))
    }
}

/// One page of a paged list: 1-based page number, `PAGE_SIZE` rows each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: i64,
}

impl Paging {
    pub const PAGE_SIZE: i64 = 50;

    /// Anything but a positive page number is the first page.
    pub fn parse(raw: &str) -> Paging {
        let page = raw.trim().parse::<i64>().ok().filter(|p| *p >= 1);
        Paging {
            page: page.unwrap_or(1).min(i64::MAX / Self::PAGE_SIZE),
        }
    }

    pub fn offset(self) -> i64 {
        (self.page - 1) * Self::PAGE_SIZE
    }

    /// The last page that has rows for `total` (1 when there are none).
    pub fn last_page(total: i64) -> i64 {
        ((total + Self::PAGE_SIZE - 1) / Self::PAGE_SIZE).max(1)
    }

    /// "Showing 51–100 of 45,000", or None when the page is empty.
    pub fn showing(self, shown: usize, total: i64) -> Option<String> {
        if shown == 0 {
            return None;
        }
        let first = self.offset() + 1;
        let last = self.offset() + shown as i64;
        Some(format!(
            "Showing {}\u{2013}{} of {}",
            thousands(first),
            thousands(last),
            thousands(total)
        ))
    }
}

/// 45000 -> "45,000".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert_eq!(UserId::parse("  admin ").unwrap().as_str(), "admin");
        assert!(UserId::parse("j.doe@example.com").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("   ").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("a<b").is_err());
        assert!(UserId::parse(&"x".repeat(65)).is_err());
        assert!(UserId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn throttle_key_ignores_case_and_spaces() {
        assert_eq!(throttle_key(" Admin "), "admin");
    }

    #[test]
    fn passwords() {
        let ok = |p: &str| NewPassword::parse(p, p, "jdoe");
        assert!(ok("long enough pass").is_ok());
    }

    #[test]
    fn password_length_counts_characters_from_12_to_128() {
        let parse = |p: &str| NewPassword::parse(p, p, "jdoe");
        let err = |p: &str| parse(p).err().unwrap_or_default();
        assert_eq!(err("k7#mQ2vL9xZ"), NewPassword::TOO_SHORT);
        assert!(parse("k7#mQ2vL9xZp").is_ok());
        // Characters, not bytes: 11 two-byte letters are still too short,
        // 12 are enough.
        assert_eq!(err(&"é".repeat(11)), NewPassword::TOO_SHORT);
        assert!(parse(&"é".repeat(12)).is_ok());
        let longest = "a".repeat(127) + "b";
        assert!(parse(&longest).is_ok());
        assert_eq!(err(&(longest + "c")), NewPassword::TOO_LONG);
    }

    #[test]
    fn password_may_hold_spaces_and_needs_no_character_classes() {
        let parse = |p: &str| NewPassword::parse(p, p, "jdoe");
        assert!(parse("correct horse battery staple").is_ok());
        assert!(parse("alllowercaseletters").is_ok());
        assert!(parse("            ").is_ok());
    }

    #[test]
    fn common_passwords_are_refused_ignoring_case() {
        assert!(COMMON.len() >= 10_000);
        let err = |p: &str| NewPassword::parse(p, p, "jdoe").err().unwrap_or_default();
        // All three are on the list and long enough to pass the length rule.
        assert_eq!(err("qwerty123456"), NewPassword::COMMON);
        assert_eq!(err("QWERTY123456"), NewPassword::COMMON);
        assert_eq!(err("LeaveMeAlone"), NewPassword::COMMON);
        assert!(is_common_password("PASSWORD"));
        assert!(!is_common_password("k7#mQ2vL9xZp"));
    }

    #[test]
    fn password_containing_the_user_id_is_refused_ignoring_case() {
        let err = |p: &str, id: &str| NewPassword::parse(p, p, id).err().unwrap_or_default();
        assert_eq!(
            err("my-JDoe-secret-2024", "jdoe"),
            NewPassword::CONTAINS_USER_ID
        );
        assert_eq!(err("jdoe@example.com!!", " J.Doe@Example.com "), "");
        assert_eq!(
            err("x-j.doe@example.com!", "J.Doe@Example.com"),
            NewPassword::CONTAINS_USER_ID
        );
        // No ID known yet: the rule cannot apply.
        assert!(NewPassword::parse("my-jdoe-secret-24", "my-jdoe-secret-24", "").is_ok());
    }

    #[test]
    fn password_confirmation_must_match() {
        let err = NewPassword::parse("long enough pass", "long enough pasS", "jdoe");
        assert_eq!(err.err().unwrap_or_default(), NewPassword::MISMATCH);
    }

    #[test]
    fn next_must_stay_on_site() {
        assert_eq!(safe_next("/system/nodes?x=1"), Some("/system/nodes?x=1"));
        assert_eq!(safe_next("//evil.example/"), None);
        assert_eq!(safe_next("/\\evil.example"), None);
        assert_eq!(safe_next("https://evil.example/"), None);
        assert_eq!(safe_next("javascript:alert(1)"), None);
        assert_eq!(safe_next("/a b"), None);
        assert_eq!(safe_next(""), None);
    }

    #[test]
    fn roles_land_where_they_belong() {
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(
            Role::parse("end_user").map(Role::landing_path),
            Some("/user-options")
        );
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn person_names() {
        assert_eq!(parse_person_name("  Zoë ", "First Name").unwrap(), "Zoë");
        assert_eq!(parse_person_name("", "Last Name").unwrap(), "");
        assert!(parse_person_name(&"x".repeat(65), "Last Name").is_err());
        assert!(parse_person_name("a\u{7}b", "Last Name").is_err());
        assert!(parse_person_name("a\u{10FFFF}", "Last Name").is_err());
    }

    #[test]
    fn user_mailboxes() {
        assert_eq!(parse_user_mailbox(" ").unwrap(), None);
        assert_eq!(
            parse_user_mailbox("jane.doe@example.com")
                .unwrap()
                .as_deref(),
            Some("jane.doe@example.com")
        );
        assert!(
            parse_user_mailbox("jane")
                .unwrap_err()
                .contains("e-mail address")
        );
    }

    #[test]
    fn searches() {
        use SearchField::*;
        assert_eq!(SearchField::parse("last_name"), LastName);
        assert_eq!(SearchField::parse("password_hash"), UserId);
        assert_eq!(SearchMatch::parse("contains"), SearchMatch::Contains);
        assert_eq!(SearchMatch::parse("x"), SearchMatch::BeginsWith);
        assert_eq!(
            Search::parse(FirstName, SearchMatch::Contains, "  "),
            Ok(Search::All)
        );
        assert_eq!(
            Search::parse(FirstName, SearchMatch::Contains, "ab"),
            Err(SEARCH_TOO_SHORT.to_owned())
        );
        assert_eq!(
            Search::parse(FirstName, SearchMatch::BeginsWith, " a "),
            Ok(Search::BeginsWith(FirstName, "a".to_owned()))
        );
        assert!(Search::parse(UserId, SearchMatch::BeginsWith, &"x".repeat(65)).is_err());
        assert_eq!(Search::fts_phrase(r#"a"b"#), r#""a""b""#);
        let (low, high) = Search::prefix_range("Jo");
        assert_eq!(low, "jo");
        assert_eq!(high, "jo\u{10FFFF}");
    }

    #[test]
    fn paging() {
        assert_eq!(Paging::parse("").page, 1);
        assert_eq!(Paging::parse("-3").page, 1);
        assert_eq!(Paging::parse("2").offset(), 50);
        assert_eq!(Paging::last_page(0), 1);
        assert_eq!(Paging::last_page(100), 2);
        assert_eq!(Paging::last_page(101), 3);
        assert_eq!(
            Paging::parse("2").showing(50, 45_000).as_deref(),
            Some("Showing 51\u{2013}100 of 45,000")
        );
        assert_eq!(Paging::parse("1").showing(0, 0), None);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(0), "0");
    }
}
