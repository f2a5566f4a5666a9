# User Options (US-2), English: the reference every other translation
# follows. Labels are exactly those of the unified-presence console.

user-options-title = User Options
signed-in-as = Signed in as { $name } ({ $user_id }).

preferences = Preferences
calendar-settings = Calendar Settings
include-calendar = Include Calendar information in my Presence Status
calendar-on = On
calendar-off = Off
save = Save
calendar-unavailable = Calendar presence is unavailable: no presence gateway has been configured. Ask your administrator.
calendar-choose = Choose On or Off.
calendar-saved-on = Update successful: calendar information is now included in your presence status.
calendar-saved-off = Update successful: calendar information is no longer included in your presence status.

user-settings-configuration = User Settings Configuration
user-locale = User Locale
user-locale-help = The language of these pages, and the name of your calendar folder in Exchange.
locale-choose = Choose a User Locale from the list.
locale-not-installed = { $locale } cannot be chosen: it is not installed on every server yet. Ask your administrator.
locale-saved = Update successful: your User Locale is now { $locale }.

presence-heading = Your calendar presence
presence-off = Calendar presence: not available, because calendar information is switched off for you.
presence-no-gateway = Calendar presence: not available, because no presence gateway has been configured.
presence-not-read = Calendar presence: not available yet: the presence engine has not read your calendar.
presence-available = Calendar presence: Available
presence-in-a-meeting = Calendar presence: In a meeting
presence-away = Calendar presence: Away
presence-unknown = Calendar presence: unknown
