//! The locale catalogue (LO-1..LO-3): each locale a user may choose, with
//! the name Exchange gives the calendar folder in that language, which
//! WebDAV URLs use.

/// English is built in and installed on every node; the others are
/// installed per node.
pub const DEFAULT: &str = "en-US";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale {
    /// BCP 47 tag, as stored.
    pub tag: &'static str,
    /// The language's name in English, then in itself.
    pub english_name: &'static str,
    pub native_name: &'static str,
    /// The Exchange calendar folder's localized name (LO-3).
    pub calendar_folder: &'static str,
}

const fn locale(
    tag: &'static str,
    english_name: &'static str,
    native_name: &'static str,
    calendar_folder: &'static str,
) -> Locale {
    Locale {
        tag,
        english_name,
        native_name,
        calendar_folder,
    }
}

pub const CATALOGUE: &[Locale] = &[
    locale("en-US", "English (United States)", "English", "Calendar"),
    locale("en-GB", "English (United Kingdom)", "English", "Calendar"),
    locale("de-DE", "German", "Deutsch", "Kalender"),
    locale("fr-FR", "French", "Français", "Calendrier"),
    locale("es-ES", "Spanish", "Español", "Calendario"),
    locale("it-IT", "Italian", "Italiano", "Calendario"),
    locale("pt-BR", "Portuguese (Brazil)", "Português", "Calendário"),
    locale("nl-NL", "Dutch", "Nederlands", "Agenda"),
    locale("sv-SE", "Swedish", "Svenska", "Kalender"),
    locale("da-DK", "Danish", "Dansk", "Kalender"),
    locale("fi-FI", "Finnish", "Suomi", "Kalenteri"),
    locale("pl-PL", "Polish", "Polski", "Kalendarz"),
    locale("ru-RU", "Russian", "Русский", "Календарь"),
    locale("ja-JP", "Japanese", "日本語", "予定表"),
    locale("zh-CN", "Chinese (Simplified)", "简体中文", "日历"),
    locale("ko-KR", "Korean", "한국어", "일정"),
];

impl Locale {
    /// A catalogue locale by its tag, case-insensitively ("de-de" is de-DE).
    pub fn parse(raw: &str) -> Result<Locale, String> {
        let tag = raw.trim();
        if tag.is_empty() {
            return Err("Choose a User Locale.".to_owned());
        }
        CATALOGUE
            .iter()
            .find(|l| l.tag.eq_ignore_ascii_case(tag))
            .copied()
            .ok_or_else(|| format!("{tag:?} is not a locale this product knows."))
    }

    pub fn is_builtin(&self) -> bool {
        self.tag == DEFAULT
    }

    /// "German (Deutsch)", for drop-down lists; "English (United States)"
    /// rather than repeating the language's own name after it.
    pub fn label(&self) -> String {
        if self.english_name.starts_with(self.native_name) {
            self.english_name.to_owned()
        } else {
            format!("{} ({})", self.english_name, self.native_name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_and_parse_case_insensitively() {
        for (i, l) in CATALOGUE.iter().enumerate() {
            assert!(
                CATALOGUE[i + 1..].iter().all(|o| o.tag != l.tag),
                "{}",
                l.tag
            );
            assert_eq!(Locale::parse(&l.tag.to_lowercase()), Ok(*l));
        }
        assert!(CATALOGUE.len() >= 10);
        assert_eq!(
            Locale::parse("de-de").map(|l| l.calendar_folder),
            Ok("Kalender")
        );
        assert!(Locale::parse("xx-XX").unwrap_err().contains("xx-XX"));
        assert!(Locale::parse(" ").is_err());
        assert!(Locale::parse(DEFAULT).is_ok_and(|l| l.is_builtin()));
    }

    #[test]
    fn labels_name_the_language_once_in_english_and_once_in_itself() {
        let label = |tag| Locale::parse(tag).map(|l| l.label());
        assert_eq!(label("de-DE"), Ok("German (Deutsch)".to_owned()));
        assert_eq!(label("en-US"), Ok("English (United States)".to_owned()));
        assert_eq!(
            label("pt-BR"),
            Ok("Portuguese (Brazil) (Português)".to_owned())
        );
    }
}
