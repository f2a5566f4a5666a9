# Benutzeroptionen (US-2), Deutsch.

user-options-title = Benutzeroptionen
signed-in-as = Angemeldet als { $name } ({ $user_id }).

preferences = Einstellungen
calendar-settings = Kalendereinstellungen
include-calendar = Kalenderinformationen in meinen Präsenzstatus aufnehmen
calendar-on = Ein
calendar-off = Aus
save = Speichern
calendar-unavailable = Die Kalenderpräsenz ist nicht verfügbar: Es wurde kein Präsenz-Gateway konfiguriert. Wenden Sie sich an Ihren Administrator.
calendar-choose = Wählen Sie Ein oder Aus.
calendar-saved-on = Aktualisierung erfolgreich: Kalenderinformationen werden jetzt in Ihren Präsenzstatus aufgenommen.
calendar-saved-off = Aktualisierung erfolgreich: Kalenderinformationen werden nicht mehr in Ihren Präsenzstatus aufgenommen.

user-settings-configuration = Konfiguration der Benutzereinstellungen
user-locale = Benutzergebietsschema
user-locale-help = Die Sprache dieser Seiten und der Name Ihres Kalenderordners in Exchange.
locale-choose = Wählen Sie ein Benutzergebietsschema aus der Liste.
locale-not-installed = { $locale } kann nicht gewählt werden: Es ist noch nicht auf jedem Server installiert. Wenden Sie sich an Ihren Administrator.
locale-saved = Aktualisierung erfolgreich: Ihr Benutzergebietsschema ist jetzt { $locale }.

presence-heading = Ihre Kalenderpräsenz
presence-off = Kalenderpräsenz: nicht verfügbar, da Kalenderinformationen für Sie ausgeschaltet sind.
presence-no-gateway = Kalenderpräsenz: nicht verfügbar, da kein Präsenz-Gateway konfiguriert wurde.
presence-not-read = Kalenderpräsenz: noch nicht verfügbar: Die Präsenz-Engine hat Ihren Kalender noch nicht gelesen.
presence-available = Kalenderpräsenz: Verfügbar
presence-in-a-meeting = Kalenderpräsenz: In einer Besprechung
presence-away = Kalenderpräsenz: Abwesend
presence-unknown = Kalenderpräsenz: unbekannt
