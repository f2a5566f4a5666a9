# ユーザオプション (US-2)、日本語。

user-options-title = ユーザオプション
signed-in-as = { $name } ({ $user_id }) としてサインインしています。

preferences = 環境設定
calendar-settings = カレンダー設定
include-calendar = プレゼンスステータスにカレンダー情報を含める
calendar-on = オン
calendar-off = オフ
save = 保存
calendar-unavailable = カレンダープレゼンスは利用できません: プレゼンスゲートウェイが設定されていません。管理者にお問い合わせください。
calendar-choose = オンまたはオフを選択してください。
calendar-saved-on = 更新しました: カレンダー情報がプレゼンスステータスに含まれるようになりました。
calendar-saved-off = 更新しました: カレンダー情報はプレゼンスステータスに含まれなくなりました。

user-settings-configuration = ユーザ設定
user-locale = ユーザロケール
user-locale-help = これらのページの言語と、Exchange のカレンダーフォルダの名前です。
locale-choose = 一覧からユーザロケールを選択してください。
locale-not-installed = { $locale } は選択できません: まだすべてのサーバにインストールされていません。管理者にお問い合わせください。
locale-saved = 更新しました: ユーザロケールは { $locale } になりました。

presence-heading = カレンダープレゼンス
presence-off = カレンダープレゼンス: カレンダー情報がオフのため、利用できません。
presence-no-gateway = カレンダープレゼンス: プレゼンスゲートウェイが設定されていないため、利用できません。
presence-not-read = カレンダープレゼンス: まだ利用できません: プレゼンスエンジンがカレンダーをまだ読み取っていません。
presence-available = カレンダープレゼンス: 連絡可能
presence-in-a-meeting = カレンダープレゼンス: 会議中
presence-away = カレンダープレゼンス: 退席中
presence-unknown = カレンダープレゼンス: 不明
