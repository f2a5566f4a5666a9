//! Translations of the end user's pages (LO-2), with Fluent. The `.ftl`
//! files under `locales/<tag>/` are compiled into the binary, parsed once,
//! and looked up per message: a locale without a translation, or a message
//! missing from one, falls back to English.

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use unic_langid::LanguageIdentifier;

use crate::domain::locale::DEFAULT;

/// Every translation shipped, English (the reference) first.
const SOURCES: &[(&str, &str)] = &[
    (
        DEFAULT,
        include_str!("../../locales/en-US/user-options.ftl"),
    ),
    (
        "de-DE",
        include_str!("../../locales/de-DE/user-options.ftl"),
    ),
    (
        "fr-FR",
        include_str!("../../locales/fr-FR/user-options.ftl"),
    ),
    (
        "ja-JP",
        include_str!("../../locales/ja-JP/user-options.ftl"),
    ),
];

struct Translation {
    tag: &'static str,
    bundle: FluentBundle<FluentResource>,
}

fn translations() -> &'static [Translation] {
    static LOADED: OnceLock<Vec<Translation>> = OnceLock::new();
    LOADED.get_or_init(|| {
        SOURCES
            .iter()
            .filter_map(|&(tag, source)| load(tag, source))
            .collect()
    })
}

/// One bundle. The sources are ours and tested, so a parse error is a bug:
/// it is logged and what did parse is still used (the rest falls back).
fn load(tag: &'static str, source: &str) -> Option<Translation> {
    let id: LanguageIdentifier = match tag.parse() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(tag, error = %e, "translation with an invalid language tag");
            return None;
        }
    };
    let resource =
        FluentResource::try_new(source.to_owned()).unwrap_or_else(|(partial, errors)| {
            tracing::error!(tag, ?errors, "translation does not parse whole");
            partial
        });
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // No Unicode isolation marks around arguments: the pages set `lang` and
    // the arguments are names and locale labels, not right-to-left text.
    bundle.set_use_isolating(false);
    if let Err(errors) = bundle.add_resource(resource) {
        tracing::error!(tag, ?errors, "translation defines a message twice");
    }
    Some(Translation { tag, bundle })
}

fn find(tag: &str) -> Option<&'static Translation> {
    translations()
        .iter()
        .find(|t| t.tag.eq_ignore_ascii_case(tag))
}

/// Whether the pages have a translation into `tag` (English always does).
pub fn has_translation(tag: &str) -> bool {
    find(tag).is_some()
}

/// The language the pages are shown in for a user whose locale is `tag`,
/// given whether it is installed on this node (LO-2): the locale itself
/// when it is installed and translated, else English.
pub fn page_language(tag: &str, installed: bool) -> &'static str {
    match find(tag) {
        Some(t) if installed => t.tag,
        _ => DEFAULT,
    }
}

/// The message `id` in `locale`, with `args` filled in; English when the
/// locale has no translation or lacks the message; the id itself when
/// English lacks it too (a bug the tests catch).
pub fn tr(locale: &str, id: &str, args: &[(&str, &str)]) -> String {
    let mut fluent_args = FluentArgs::new();
    for &(name, value) in args {
        fluent_args.set(name, value);
    }
    let args = (!args.is_empty()).then_some(&fluent_args);
    [find(locale), find(DEFAULT)]
        .into_iter()
        .flatten()
        .find_map(|t| format(&t.bundle, id, args))
        .unwrap_or_else(|| {
            tracing::warn!(id, locale, "no translation, not even English");
            id.to_owned()
        })
}

fn format(
    bundle: &FluentBundle<FluentResource>,
    id: &str,
    args: Option<&FluentArgs>,
) -> Option<String> {
    let pattern = bundle.get_message(id)?.value()?;
    let mut errors = Vec::new();
    let text = bundle.format_pattern(pattern, args, &mut errors);
    if !errors.is_empty() {
        tracing::warn!(id, ?errors, "translation formatted with errors");
    }
    Some(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_syntax::ast::Entry;

    /// The message ids of a translation file, with the variables each uses.
    fn messages(source: &str) -> Vec<(String, Vec<String>)> {
        let resource = FluentResource::try_new(source.to_owned())
            .unwrap_or_else(|(_, errors)| panic!("does not parse: {errors:?}"));
        resource
            .entries()
            .filter_map(|entry| match entry {
                Entry::Message(m) => Some((m.id.name.to_owned(), variables(source, m.id.name))),
                _ => None,
            })
            .collect()
    }

    /// `$name` references on the message's line (ours are one line each).
    fn variables(source: &str, id: &str) -> Vec<String> {
        let line = source
            .lines()
            .find(|l| l.starts_with(&format!("{id} =")))
            .unwrap_or_default();
        let mut found: Vec<String> = line
            .split('$')
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect()
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn every_translation_parses_and_has_every_english_message() {
        let english = messages(SOURCES[0].1);
        assert!(english.len() >= 20, "{english:?}");
        for &(tag, source) in &SOURCES[1..] {
            let theirs = messages(source);
            for (id, vars) in &english {
                let found = theirs.iter().find(|(other, _)| other == id);
                let Some((_, their_vars)) = found else {
                    panic!("{tag} lacks the message {id}");
                };
                assert_eq!(their_vars, vars, "{tag} {id} uses other variables");
            }
            for (id, _) in &theirs {
                assert!(
                    english.iter().any(|(e, _)| e == id),
                    "{tag} has {id}, which English lacks"
                );
            }
        }
        assert_eq!(translations().len(), SOURCES.len(), "every bundle loads");
    }

    #[test]
    fn every_translation_is_a_catalogue_locale() {
        for &(tag, _) in SOURCES {
            assert!(crate::domain::locale::Locale::parse(tag).is_ok(), "{tag}");
        }
    }

    #[test]
    fn english_labels_are_the_spec_ones() {
        assert_eq!(
            tr("en-US", "include-calendar", &[]),
            "Include Calendar information in my Presence Status"
        );
        assert_eq!(tr("en-US", "calendar-settings", &[]), "Calendar Settings");
        assert_eq!(tr("en-US", "user-locale", &[]), "User Locale");
        assert_eq!(
            tr("en-US", "user-settings-configuration", &[]),
            "User Settings Configuration"
        );
        assert_eq!(tr("en-US", "calendar-on", &[]), "On");
        assert_eq!(tr("en-US", "calendar-off", &[]), "Off");
        assert_eq!(tr("en-US", "save", &[]), "Save");
    }

    #[test]
    fn translates_with_arguments() {
        assert_eq!(tr("de-DE", "save", &[]), "Speichern");
        assert_eq!(tr("ja-JP", "save", &[]), "保存");
        assert_eq!(tr("de-de", "calendar-on", &[]), "Ein");
        assert_eq!(
            tr("de-DE", "locale-saved", &[("locale", "German (Deutsch)")]),
            "Aktualisierung erfolgreich: Ihr Benutzergebietsschema ist jetzt German (Deutsch)."
        );
    }

    #[test]
    fn unknown_or_untranslated_locales_fall_back_to_english() {
        assert_eq!(tr("sv-SE", "save", &[]), "Save");
        assert_eq!(tr("xx-XX", "user-locale", &[]), "User Locale");
        assert_eq!(tr("", "calendar-off", &[]), "Off");
        // A message English lacks comes back as its id, never a panic.
        assert_eq!(tr("de-DE", "no-such-message", &[]), "no-such-message");
        assert!(!has_translation("sv-SE"));
        assert!(has_translation("ja-JP"));
    }

    #[test]
    fn page_language_needs_installed_and_translated() {
        assert_eq!(page_language("de-DE", true), "de-DE");
        assert_eq!(page_language("de-DE", false), "en-US");
        assert_eq!(page_language("sv-SE", true), "en-US");
        assert_eq!(page_language("en-US", true), "en-US");
        assert_eq!(page_language("xx-XX", true), "en-US");
    }
}
