# Options utilisateur (US-2), français.

user-options-title = Options utilisateur
signed-in-as = Connecté en tant que { $name } ({ $user_id }).

preferences = Préférences
calendar-settings = Paramètres du calendrier
include-calendar = Inclure les informations du calendrier dans mon statut de présence
calendar-on = Activé
calendar-off = Désactivé
save = Enregistrer
calendar-unavailable = La présence du calendrier n’est pas disponible : aucune passerelle de présence n’a été configurée. Adressez-vous à votre administrateur.
calendar-choose = Choisissez Activé ou Désactivé.
calendar-saved-on = Mise à jour réussie : les informations du calendrier sont désormais incluses dans votre statut de présence.
calendar-saved-off = Mise à jour réussie : les informations du calendrier ne sont plus incluses dans votre statut de présence.

user-settings-configuration = Configuration des paramètres utilisateur
user-locale = Langue de l’utilisateur
user-locale-help = La langue de ces pages et le nom de votre dossier de calendrier dans Exchange.
locale-choose = Choisissez une langue dans la liste.
locale-not-installed = { $locale } ne peut pas être choisie : elle n’est pas encore installée sur tous les serveurs. Adressez-vous à votre administrateur.
locale-saved = Mise à jour réussie : votre langue est désormais { $locale }.

presence-heading = Votre présence de calendrier
presence-off = Présence du calendrier : non disponible, car les informations du calendrier sont désactivées pour vous.
presence-no-gateway = Présence du calendrier : non disponible, car aucune passerelle de présence n’a été configurée.
presence-not-read = Présence du calendrier : pas encore disponible : le moteur de présence n’a pas encore lu votre calendrier.
presence-available = Présence du calendrier : Disponible
presence-in-a-meeting = Présence du calendrier : En réunion
presence-away = Présence du calendrier : Absent
presence-unknown = Présence du calendrier : inconnue
