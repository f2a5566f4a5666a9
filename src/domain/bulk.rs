//! Bulk Administration (US-4): the CSV file of end users, read into a report
//! with one outcome per row (create, update or error) before anything is
//! written, and written back out for export. Pure: what the database knows
//! (registered nodes, usable locales, existing users) comes in as `Known`.
//!
//! The format, exactly: a header row `user_id,first_name,last_name,mailbox,
//! node,locale,calendar`, then one row per user (RFC 4180: quoted fields may
//! hold commas, quotes doubled, line breaks; CRLF or LF line ends; a UTF-8
//! byte-order mark is ignored). Rows are counted as records with the header
//! as row 1, as a spreadsheet numbers them; blank lines are skipped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use super::gateway::{GatewayKind, Mailbox};
use super::locale::{DEFAULT, Locale};
use super::user::{Role, UserId};

/// The largest file accepted, from the console or the shell.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// The header row, in this order.
pub const COLUMNS: [&str; 7] = [
    "user_id",
    "first_name",
    "last_name",
    "mailbox",
    "node",
    "locale",
    "calendar",
];
/// First and last names are at most this many characters.
pub const NAME_MAX: usize = 64;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One valid row: everything a user row holds that a file may set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub mailbox: Option<Mailbox>,
    /// The registered node's name as registered; None = unassigned.
    pub node: Option<String>,
    /// A catalogue tag, usable on every node.
    pub locale: &'static str,
    pub calendar: bool,
}

/// A user as stored, as far as a file can change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub role: Role,
    pub first_name: String,
    pub last_name: String,
    pub mailbox: Option<String>,
    pub node: Option<String>,
    pub locale: String,
    pub calendar: bool,
}

impl Existing {
    /// Whether writing `record` would change nothing.
    pub fn same_as(&self, record: &UserRecord) -> bool {
        self.first_name == record.first_name
            && self.last_name == record.last_name
            && self.mailbox.as_deref() == record.mailbox.as_ref().map(Mailbox::as_str)
            && self.node == record.node
            && self.locale == record.locale
            && self.calendar == record.calendar
    }
}

/// What the database knows, read in the transaction that checks the file.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Registered nodes' names.
    pub nodes: Vec<String>,
    /// Locale tags installed on every node (the built-in one included).
    pub usable_locales: HashSet<&'static str>,
    /// Why a catalogue locale is not usable, naming the nodes that lack it.
    pub locale_reasons: HashMap<&'static str, String>,
    /// Users by lower-cased user ID.
    pub users: HashMap<String, Existing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Create(UserRecord),
    /// `unchanged`: the row repeats what is stored, so nothing is written.
    Update {
        record: UserRecord,
        unchanged: bool,
    },
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    /// The header is row 1.
    pub row: usize,
    /// The user ID as written (trimmed), for the report.
    pub user_id: String,
    pub outcome: Outcome,
}

/// Rows in error kept with their messages; beyond this many only counted.
/// A 16 MiB file of two-byte bad lines is 8 million errors, which kept in
/// full took 2.4 GB; nobody reads past the first few thousand, and a file
/// with any error is not applied, so the rest are not needed.
pub const ERRORS_KEPT: usize = 5_000;

/// The whole file checked: every row's outcome, except errors beyond
/// `ERRORS_KEPT`, which are only counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub rows: Vec<RowReport>,
    /// Data rows in the file, those not kept in `rows` included.
    pub total: usize,
    pub created: usize,
    pub updated: usize,
    /// Of `updated`, the rows that change nothing.
    pub unchanged: usize,
    pub errors: usize,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.errors == 0
    }

    pub fn error_rows(&self) -> impl Iterator<Item = (&RowReport, &str)> {
        self.rows.iter().filter_map(|r| match &r.outcome {
            Outcome::Error(message) => Some((r, message.as_str())),
            _ => None,
        })
    }

    /// The records to write: creations and changing updates, in file order.
    pub fn writes(&self) -> impl Iterator<Item = &UserRecord> {
        self.rows.iter().filter_map(|r| match &r.outcome {
            Outcome::Create(record)
            | Outcome::Update {
                record,
                unchanged: false,
            } => Some(record),
            _ => None,
        })
    }

    /// "2 to create, 3 to update, 1 error", for people.
    pub fn summary(&self) -> String {
        format!(
            "{} to create, {} to update{}, {}",
            self.created,
            self.updated,
            if self.unchanged > 0 {
                format!(" ({} unchanged)", self.unchanged)
            } else {
                String::new()
            },
            super::count(self.errors as i64, "error")
        )
    }
}

/// Why the file as a whole cannot be read; no row report then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    TooLarge,
    Empty,
    Header(String),
    NoRows,
    Unreadable(String),
    /// The request that asked for the check ended (the client went away or
    /// it timed out) before the file was read through: nothing was written.
    Stopped,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::TooLarge => f.write_str("The file is larger than 16 MiB: nothing imported."),
            FileError::Empty => f.write_str("The file is empty: nothing imported."),
            FileError::Header(why) => write!(
                f,
                "{why} The first row must be the header {}. Nothing imported.",
                COLUMNS.join(",")
            ),
            FileError::NoRows => {
                f.write_str("The file has its header but no user rows: nothing imported.")
            }
            FileError::Unreadable(why) => {
                write!(
                    f,
                    "The file cannot be read as CSV ({why}): nothing imported."
                )
            }
            FileError::Stopped => f.write_str(
                "The import was stopped before the file was read through: nothing imported.",
            ),
        }
    }
}

/// Whether a row's `calendar` value switches calendar presence on.
pub fn parse_calendar(raw: &str) -> Result<bool, String> {
    let value = raw.trim().to_ascii_lowercase();
    match value.as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        "" => Err("calendar: enter on or off.".to_owned()),
        _ => Err(format!(
            "calendar: {:?} is neither on nor off (also accepted: true/false, yes/no, 1/0).",
            raw.trim()
        )),
    }
}

fn parse_name(column: &str, raw: &str) -> Result<String, String> {
    let value = raw.trim();
    if value.chars().count() > NAME_MAX {
        return Err(format!("{column}: at most {NAME_MAX} characters."));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{column}: no line breaks or control characters."));
    }
    Ok(value.to_owned())
}

fn parse_node(raw: &str, known: &Known) -> Result<Option<String>, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    // Host names are case-insensitive; the registered spelling is stored.
    known
        .nodes
        .iter()
        .find(|n| n.eq_ignore_ascii_case(value))
        .map(|n| Some(n.clone()))
        .ok_or_else(|| {
            let registered = if known.nodes.is_empty() {
                "none".to_owned()
            } else {
                known.nodes.join(", ")
            };
            format!("node: {value:?} is not a registered node (registered: {registered}).")
        })
}

fn parse_locale(raw: &str, known: &Known) -> Result<&'static str, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(DEFAULT);
    }
    let locale = Locale::parse(value).map_err(|e| format!("locale: {e}"))?;
    if known.usable_locales.contains(locale.tag) {
        return Ok(locale.tag);
    }
    Err(match known.locale_reasons.get(locale.tag) {
        Some(reason) => format!("locale: {reason}"),
        None => format!("locale: {} is not installed on every node.", locale.label()),
    })
}

/// A data row's fields, each checked; all its problems in one message.
fn parse_row(fields: &[&str], known: &Known) -> Result<UserRecord, String> {
    let mut problems = Vec::new();
    let user_id = UserId::parse(fields[0])
        .map_err(|e| problems.push(format!("user_id: {e}")))
        .ok();
    let first_name = parse_name("first_name", fields[1])
        .map_err(|e| problems.push(e))
        .ok();
    let last_name = parse_name("last_name", fields[2])
        .map_err(|e| problems.push(e))
        .ok();
    // A user's mailbox is an address, as EWS names it.
    let mailbox = Mailbox::parse_optional(GatewayKind::Ews, fields[3])
        .map_err(|e| problems.push(format!("mailbox: {e}")))
        .ok();
    let node = parse_node(fields[4], known)
        .map_err(|e| problems.push(e))
        .ok();
    let locale = parse_locale(fields[5], known)
        .map_err(|e| problems.push(e))
        .ok();
    let calendar = parse_calendar(fields[6]).map_err(|e| problems.push(e)).ok();
    match (
        user_id, first_name, last_name, mailbox, node, locale, calendar,
    ) {
        (
            Some(user_id),
            Some(first_name),
            Some(last_name),
            Some(mailbox),
            Some(node),
            Some(locale),
            Some(calendar),
        ) if problems.is_empty() => Ok(UserRecord {
            user_id,
            first_name,
            last_name,
            mailbox,
            node,
            locale,
            calendar,
        }),
        _ => Err(problems.join(" ")),
    }
}

fn check_header(header: &csv::ByteRecord) -> Result<(), FileError> {
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
        .collect();
    if names.len() == COLUMNS.len() && names.iter().zip(COLUMNS).all(|(n, c)| n == c) {
        return Ok(());
    }
    // A first row with the right width and no column name is data.
    if names.len() == COLUMNS.len() && !names.iter().any(|n| COLUMNS.contains(&n.as_str())) {
        return Err(FileError::Header(
            "The header row is missing: the first row looks like a user.".to_owned(),
        ));
    }
    Err(FileError::Header(format!(
        "The header row is wrong: it reads {:?}.",
        names.join(",")
    )))
}

/// Reads and checks a whole file against what the database knows. A file
/// that cannot be read at all is a `FileError`; otherwise every row gets an
/// outcome, and the file may be applied only when no row is in error.
pub fn validate(bytes: &[u8], known: &Known) -> Result<Report, FileError> {
    validate_until(bytes, known, &AtomicBool::new(false))
}

/// As `validate`, giving up with `FileError::Stopped` as soon as `stop` is
/// set: a 16 MiB file takes seconds of CPU on a blocking thread, which
/// nothing else can interrupt once the request that wanted it has gone.
pub fn validate_until(bytes: &[u8], known: &Known, stop: &AtomicBool) -> Result<Report, FileError> {
    if bytes.len() > MAX_BYTES {
        return Err(FileError::TooLarge);
    }
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FileError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // Wrong column counts are a row's error, not the file's.
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(e)) => return Err(FileError::Unreadable(e.to_string())),
        None => return Err(FileError::Empty),
    };
    check_header(&header)?;

    let mut report = Report::default();
    // Lower-cased user ID -> the row that first named it.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut row = 1;
    for record in records {
        // One relaxed load per row costs nothing next to parsing the row.
        if stop.load(Ordering::Relaxed) {
            return Err(FileError::Stopped);
        }
        row += 1;
        let record = record.map_err(|e| FileError::Unreadable(format!("row {row}: {e}")))?;
        report.total += 1;
        let (user_id, outcome) = check_record(&record, row, known, &mut seen);
        match &outcome {
            Outcome::Create(_) => report.created += 1,
            Outcome::Update { unchanged, .. } => {
                report.updated += 1;
                report.unchanged += usize::from(*unchanged);
            }
            Outcome::Error(_) => {
                report.errors += 1;
                if report.errors > ERRORS_KEPT {
                    continue;
                }
            }
        }
        report.rows.push(RowReport {
            row,
            user_id,
            outcome,
        });
    }
    if report.total == 0 {
        return Err(FileError::NoRows);
    }
    Ok(report)
}

fn check_record(
    record: &csv::ByteRecord,
    row: usize,
    known: &Known,
    seen: &mut HashMap<String, usize>,
) -> (String, Outcome) {
    let mut fields = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        match std::str::from_utf8(field) {
            // Undo the export's formula quote before any check sees the cell.
            Ok(text) => fields.push(formula_safe_cell(text, CellDirection::Import)),
            Err(_) => {
                let column = COLUMNS.get(i).copied().unwrap_or("an extra column");
                let shown = String::from_utf8_lossy(record.get(0).unwrap_or_default())
                    .trim()
                    .to_owned();
                return (
                    shown,
                    Outcome::Error(format!(
                        "Row {row} is not UTF-8 text (in {column}): save the file as CSV UTF-8 \
                         and upload it again."
                    )),
                );
            }
        }
    }
    let shown = fields
        .first()
        .map(|f| f.trim().to_owned())
        .unwrap_or_default();
    if fields.len() != COLUMNS.len() {
        return (
            shown,
            Outcome::Error(format!(
                "Row {row} has {} where {} are expected.",
                super::count(fields.len() as i64, "column"),
                COLUMNS.len()
            )),
        );
    }
    let fields: Vec<&str> = fields.iter().map(|f| f.as_ref()).collect();
    let record = match parse_row(&fields, known) {
        Ok(record) => record,
        Err(message) => return (shown, Outcome::Error(message)),
    };
    let key = record.user_id.as_str().to_lowercase();
    if let Some(first) = seen.get(&key) {
        return (
            shown,
            Outcome::Error(format!(
                "user_id: duplicate of row {first}: a user appears once per file."
            )),
        );
    }
    seen.insert(key.clone(), row);
    let outcome = match known.users.get(&key) {
        None => Outcome::Create(record),
        Some(existing) if existing.role == Role::Admin => Outcome::Error(format!(
            "user_id: {} is an administrator: bulk import changes end users only.",
            record.user_id
        )),
        Some(existing) => Outcome::Update {
            unchanged: existing.same_as(&record),
            record,
        },
    };
    (shown, outcome)
}

/// First characters that make a spreadsheet read a cell as a formula (OWASP
/// "CSV Injection"): `=`, `+`, `-`, `@`, tab and carriage return.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a cell needs the quote: it starts with a formula character, or
/// with quotes before one. Counting the quoted forms too is what makes
/// export then import give back every value exactly, even one that already
/// starts with `'=`.
fn needs_quote(value: &str) -> bool {
    value.trim_start_matches('\'').starts_with(FORMULA_STARTS)
}

/// The one rule for formula injection, both ways. `Export` prefixes a cell
/// that a spreadsheet would run as a formula with `'`, so it shows as text;
/// `Import` takes that quote off again, so a file exported and imported
/// keeps every value as it was. Cells without the risk pass unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellDirection {
    Export,
    Import,
}

pub fn formula_safe_cell(value: &str, direction: CellDirection) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match direction {
        CellDirection::Export if needs_quote(value) => Cow::Owned(format!("'{value}")),
        CellDirection::Import => match value.strip_prefix('\'') {
            Some(rest) if needs_quote(rest) => Cow::Borrowed(rest),
            _ => Cow::Borrowed(value),
        },
        CellDirection::Export => Cow::Borrowed(value),
    }
}

/// One row of an export: a stored end user's fields, as stored.
pub struct ExportRow<'a> {
    pub user_id: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub mailbox: Option<&'a str>,
    pub node: Option<&'a str>,
    pub locale: &'a str,
    pub calendar: bool,
}

/// Writes the header and the rows in the import format (CRLF line ends, as
/// RFC 4180 and spreadsheets have them; quoting only where needed).
pub fn write_csv<'a>(rows: impl IntoIterator<Item = ExportRow<'a>>) -> Result<Vec<u8>, String> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let failed = |e: csv::Error| format!("writing the CSV: {e}");
    writer.write_record(COLUMNS).map_err(failed)?;
    for row in rows {
        let cells = [
            row.user_id,
            row.first_name,
            row.last_name,
            row.mailbox.unwrap_or_default(),
            row.node.unwrap_or_default(),
            row.locale,
            if row.calendar { "on" } else { "off" },
        ];
        writer
            .write_record(
                cells
                    .iter()
                    .map(|cell| formula_safe_cell(cell, CellDirection::Export).into_owned()),
            )
            .map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|e| format!("writing the CSV: {}", e.error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user_id,first_name,last_name,mailbox,node,locale,calendar\n";

    fn known() -> Known {
        let mut users = HashMap::new();
        users.insert(
            "admin".to_owned(),
            Existing {
                role: Role::Admin,
                first_name: String::new(),
                last_name: String::new(),
                mailbox: None,
                node: None,
                locale: DEFAULT.to_owned(),
                calendar: false,
            },
        );
        users.insert(
            "bob".to_owned(),
            Existing {
                role: Role::EndUser,
                first_name: "Bob".to_owned(),
                last_name: "Baker".to_owned(),
                mailbox: Some("bob@example.com".to_owned()),
                node: Some("node-a".to_owned()),
                locale: "de-DE".to_owned(),
                calendar: true,
            },
        );
        let mut locale_reasons = HashMap::new();
        locale_reasons.insert(
            "fr-FR",
            "French (Français) is not installed on node-b: install it first.".to_owned(),
        );
        Known {
            nodes: vec!["node-a".to_owned(), "node-b".to_owned()],
            usable_locales: ["en-US", "de-DE"].into_iter().collect(),
            locale_reasons,
            users,
        }
    }

    fn check(body: &str) -> Report {
        validate(format!("{HEADER}{body}").as_bytes(), &known()).expect("a readable file")
    }

    fn error_of(report: &Report, row: usize) -> String {
        match &report
            .rows
            .iter()
            .find(|r| r.row == row)
            .expect("row")
            .outcome
        {
            Outcome::Error(message) => message.clone(),
            other => panic!("row {row} is not an error: {other:?}"),
        }
    }

    #[test]
    fn good_rows_create_and_update() {
        let report = check(
            "alice,Alice,Archer,alice@example.com,node-a,de-de,on\n\
             BOB,Bob,Baker,bob@example.com,NODE-A,de-DE,yes\n\
             carol,,,,,,off\n",
        );
        assert_eq!((report.created, report.updated, report.errors), (2, 1, 0));
        assert_eq!(report.unchanged, 1, "bob's row repeats what is stored");
        let Outcome::Create(alice) = &report.rows[0].outcome else {
            panic!("{:?}", report.rows[0]);
        };
        assert_eq!(report.rows[0].row, 2, "the header is row 1");
        assert_eq!(alice.locale, "de-DE");
        assert_eq!(alice.node.as_deref(), Some("node-a"));
        assert!(alice.calendar);
        let Outcome::Create(carol) = &report.rows[2].outcome else {
            panic!("{:?}", report.rows[2]);
        };
        assert_eq!(carol.locale, DEFAULT, "an empty locale is en-US");
        assert_eq!((carol.node.as_ref(), carol.mailbox.as_ref()), (None, None));
        assert_eq!(
            report.writes().count(),
            2,
            "the unchanged row is not written"
        );
        assert!(report.is_clean());
    }

    #[test]
    fn calendar_values() {
        for on in ["on", "ON", " true", "Yes", "1"] {
            assert_eq!(parse_calendar(on), Ok(true), "{on}");
        }
        for off in ["off", "False", "NO", "0"] {
            assert_eq!(parse_calendar(off), Ok(false), "{off}");
        }
        assert!(parse_calendar("").is_err());
        assert!(parse_calendar("maybe").unwrap_err().contains("maybe"));
    }

    #[test]
    fn duplicate_ids_name_the_earlier_row() {
        let report = check("a,,,,,,on\nb,,,,,,on\nA,,,,,,off\n");
        assert_eq!(report.errors, 1);
        assert!(error_of(&report, 4).contains("duplicate of row 2"));
    }

    #[test]
    fn unknown_and_uninstalled_locales() {
        let report = check("a,,,,,xx-XX,on\nb,,,,,fr-FR,on\nc,,,,,ja-JP,on\n");
        assert_eq!(report.errors, 3);
        assert!(error_of(&report, 2).contains("not a locale this product knows"));
        assert!(error_of(&report, 3).contains("not installed on node-b"));
        assert!(error_of(&report, 4).contains("not installed on every node"));
    }

    #[test]
    fn malformed_mailbox() {
        let report = check("a,,,not-a-mailbox,,,on\n");
        assert!(error_of(&report, 2).starts_with("mailbox: "));
    }

    #[test]
    fn wrong_column_counts() {
        let report = check("a,,,,,on\nb,,,,,,on,extra\nc\n");
        assert_eq!(report.errors, 3);
        assert!(error_of(&report, 2).contains("Row 2 has 6 columns where 7 are expected"));
        assert!(error_of(&report, 3).contains("8 columns"));
        assert!(error_of(&report, 4).contains("1 column where"));
    }

    #[test]
    fn unknown_node() {
        let report = check("a,,,,node-z,,on\n");
        let message = error_of(&report, 2);
        assert!(
            message.contains("\"node-z\" is not a registered node"),
            "{message}"
        );
        assert!(message.contains("node-a, node-b"));
    }

    #[test]
    fn byte_order_mark_crlf_and_quoting() {
        let file = "\u{feff}user_id,first_name,last_name,mailbox,node,locale,calendar\r\n\
                    a,\"Smith, Jr.\",\"O\"\"Brien\",,,,on\r\n\
                    b,Multi,\"line\r\nname\",,,,off\r\n";
        let report = validate(file.as_bytes(), &known()).expect("readable");
        let Outcome::Create(a) = &report.rows[0].outcome else {
            panic!("{:?}", report.rows[0]);
        };
        assert_eq!(a.first_name, "Smith, Jr.");
        assert_eq!(a.last_name, "O\"Brien");
        assert_eq!(a.user_id.as_str(), "a", "no BOM in the first header");
        // A line break inside a name is refused, on its own row number.
        assert_eq!(report.rows[1].row, 3);
        assert!(error_of(&report, 3).contains("last_name"));
    }

    #[test]
    fn non_utf8_rows_are_named() {
        let mut file = HEADER.as_bytes().to_vec();
        file.extend_from_slice(b"a,Ren\xe9,,,,,on\n");
        let report = validate(&file, &known()).expect("readable");
        let message = error_of(&report, 2);
        assert!(message.contains("Row 2 is not UTF-8"), "{message}");
        assert!(message.contains("first_name"));
    }

    #[test]
    fn administrators_and_bad_ids_and_long_names() {
        let long = "x".repeat(65);
        let report = check(&format!(
            "ADMIN,,,,,,on\nbad id,,,,,,on\nc,{long},,,,,on\nd,,,,,,perhaps\n"
        ));
        assert_eq!(report.errors, 4);
        assert!(error_of(&report, 2).contains("is an administrator"));
        assert!(error_of(&report, 3).starts_with("user_id: "));
        assert!(error_of(&report, 4).contains("first_name: at most 64"));
        assert!(error_of(&report, 5).contains("calendar"));
    }

    #[test]
    fn file_errors() {
        let known = known();
        assert_eq!(validate(b"", &known), Err(FileError::Empty));
        assert_eq!(
            validate(b"\xEF\xBB\xBF \r\n", &known),
            Err(FileError::Empty)
        );
        assert_eq!(validate(HEADER.as_bytes(), &known), Err(FileError::NoRows));
        let missing = validate(b"alice,Alice,Archer,,,,on\n", &known).unwrap_err();
        assert!(matches!(&missing, FileError::Header(why) if why.contains("missing")));
        let wrong = validate(
            b"user_id,last_name,first_name,mailbox,node,locale,calendar\na,,,,,,on\n",
            &known,
        )
        .unwrap_err();
        assert!(wrong.to_string().contains("header row is wrong"), "{wrong}");
        assert!(wrong.to_string().contains(&COLUMNS.join(",")));
        // Header names are matched without regard to case or spaces.
        assert!(
            validate(
                b"User_ID, First_Name,last_name,mailbox,node,locale,CALENDAR\na,,,,,,on\n",
                &known
            )
            .is_ok()
        );
        let big = vec![b' '; MAX_BYTES + 1];
        assert_eq!(validate(&big, &known), Err(FileError::TooLarge));
    }

    #[test]
    fn errors_beyond_those_kept_are_counted_only() {
        let file = format!("{HEADER}{}", "x\n".repeat(ERRORS_KEPT + 10));
        let report = validate(file.as_bytes(), &known()).expect("readable");
        assert_eq!(report.total, ERRORS_KEPT + 10);
        assert_eq!(report.errors, ERRORS_KEPT + 10);
        assert_eq!(report.rows.len(), ERRORS_KEPT);
        assert!(!report.is_clean());
    }

    #[test]
    fn a_stopped_check_gives_up_without_a_report() {
        let file = format!("{HEADER}alice,Alice,Archer,,,,on\n");
        let stop = AtomicBool::new(true);
        assert_eq!(
            validate_until(file.as_bytes(), &known(), &stop),
            Err(FileError::Stopped)
        );
        stop.store(false, Ordering::Relaxed);
        assert!(validate_until(file.as_bytes(), &known(), &stop).is_ok());
    }

    #[test]
    fn formula_cells_are_quoted_on_export_and_unquoted_on_import() {
        use CellDirection::{Export, Import};
        for risky in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'=1",
            "''+1",
        ] {
            let out = formula_safe_cell(risky, Export);
            assert_eq!(out, format!("'{risky}"), "{risky:?}");
            assert_eq!(formula_safe_cell(&out, Import), risky, "{risky:?}");
        }
        for plain in ["", "Bob", "O'Brien", "'", "'quoted", "a=b", "1-2", "x@y.z"] {
            assert_eq!(formula_safe_cell(plain, Export), plain, "{plain:?}");
            assert_eq!(formula_safe_cell(plain, Import), plain, "{plain:?}");
        }
        // A hand-written quoted formula imports without its quote.
        assert_eq!(formula_safe_cell("'@SUM(A1)", Import), "@SUM(A1)");
    }

    #[test]
    fn export_quotes_formula_names_and_import_restores_them() {
        let csv = write_csv([ExportRow {
            user_id: "eve",
            first_name: "=HYPERLINK(\"http://evil\",\"x\")",
            last_name: "-2",
            mailbox: None,
            node: None,
            locale: "en-US",
            calendar: false,
        }])
        .expect("csv");
        let text = String::from_utf8(csv.clone()).expect("utf-8");
        assert!(
            text.contains("eve,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",'-2,"),
            "{text}"
        );
        let report = validate(&csv, &known()).expect("readable");
        let Outcome::Create(record) = &report.rows[0].outcome else {
            panic!("{:?}", report.rows[0]);
        };
        assert_eq!(record.first_name, "=HYPERLINK(\"http://evil\",\"x\")");
        assert_eq!(record.last_name, "-2");
    }

    #[test]
    fn export_round_trips() {
        let csv = write_csv([
            ExportRow {
                user_id: "bob",
                first_name: "Bob",
                last_name: "Baker, \"Jr\"",
                mailbox: Some("bob@example.com"),
                node: Some("node-a"),
                locale: "de-DE",
                calendar: true,
            },
            ExportRow {
                user_id: "zed",
                first_name: "",
                last_name: "",
                mailbox: None,
                node: None,
                locale: "en-US",
                calendar: false,
            },
        ])
        .expect("csv");
        let text = String::from_utf8(csv.clone()).expect("utf-8");
        assert!(text.starts_with("user_id,first_name,last_name,mailbox,node,locale,calendar\r\n"));
        assert!(text.contains("zed,,,,,en-US,off\r\n"));
        let report = validate(&csv, &known()).expect("readable");
        assert_eq!((report.created, report.updated, report.errors), (1, 1, 0));
        let Outcome::Update { record, .. } = &report.rows[0].outcome else {
            panic!("{:?}", report.rows[0]);
        };
        assert_eq!(record.last_name, "Baker, \"Jr\"");
    }
}
