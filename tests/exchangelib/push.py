"""An independent EWS client against exchange-sim's push notifications (EN-6).

exchangelib, which we did not write, subscribes to the calendar of an
impersonated mailbox for push notifications; a small HTTP server here
receives the simulator's SendNotification when the calendar changes, parses
it with exchangelib's own SendNotification service, and answers with
exchangelib's OK and then Unsubscribe payloads. Also checked: a subscription
without impersonation is refused, Unsubscribe refuses a push subscription and
ends a pull one. Exits 0 when every check holds, 1 with the reason otherwise;
every wait is bounded.

Usage: push.py BASE_URL CA_PEM ACCOUNT PASSWORD
"""

import http.server
import json
import os
import queue
import sys
import threading
import time

import requests

BASE, CA, ACCOUNT, PASSWORD = sys.argv[1:5]
# requests (under exchangelib) trusts the simulator's CA from here.
os.environ["REQUESTS_CA_BUNDLE"] = CA

from exchangelib import (  # noqa: E402
    BASIC,
    DELEGATE,
    IMPERSONATION,
    Account,
    Build,
    Configuration,
    Credentials,
    Version,
)
from exchangelib.errors import (  # noqa: E402
    ErrorInvalidSubscription,
    ErrorMissingEmailAddress,
    ErrorSubscriptionDelegateAccessNotSupported,
)
from exchangelib.properties import (  # noqa: E402
    CreatedEvent,
    ModifiedEvent,
    Notification,
    StatusEvent,
)
from exchangelib.protocol import BaseProtocol  # noqa: E402
from exchangelib.services import SendNotification  # noqa: E402

BaseProtocol.TIMEOUT = 20
WAIT = 20  # seconds, for each notification
MAILBOX = "carol@example.com"


def fail(why):
    sys.exit(f"push.py: {why}")


def sim(method, path, data=None):
    answer = requests.request(method, f"{BASE}{path}", data=data, verify=CA, timeout=20)
    if answer.status_code != 200:
        fail(f"{method} {path}: {answer.status_code} {answer.text}")
    return answer


def stats():
    return json.loads(sim("GET", "/sim/stats").text)


def row(start_hour):
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    return f"{MAILBOX},{day}T{start_hour:02}:00:00Z,{day}T{start_hour + 1:02}:00:00Z,Busy\n"


# The mailbox exists, with an empty calendar.
sim("POST", "/sim/calendars", f"{MAILBOX},,,\n")

config = Configuration(
    service_endpoint=f"{BASE}/EWS/Exchange.asmx",
    credentials=Credentials(ACCOUNT, PASSWORD),
    auth_type=BASIC,
    version=Version(build=Build(15, 1, 2507, 6)),
)

# The call-back: each POST is parsed by exchangelib and answered with the
# payload the test chooses (OK, then Unsubscribe).
received = queue.Queue()
answers = queue.Queue()
service = None  # set below, once an account exists


class Callback(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(min(length, 1 << 20))
        try:
            notifications = list(service.parse(body))
        except Exception as e:  # reported by the main thread
            notifications = [e]
        received.put((self.path, notifications))
        try:
            payload = answers.get(timeout=WAIT)
        except queue.Empty:
            payload = service.ok_payload()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
threading.Thread(target=server.serve_forever, daemon=True).start()
callback_url = f"http://127.0.0.1:{server.server_address[1]}/presence/push-test"


def next_notification():
    try:
        path, notifications = received.get(timeout=WAIT)
    except queue.Empty:
        fail(f"no SendNotification within {WAIT} s")
    if path != "/presence/push-test":
        fail(f"the notification went to {path}")
    if len(notifications) != 1 or not isinstance(notifications[0], Notification):
        fail(f"exchangelib did not parse one Notification: {notifications!r}")
    return notifications[0]


# Without impersonation the service account has no calendar to subscribe to,
# and naming the mailbox in the folder id is delegate access: both refused.
service_account = Account(
    primary_smtp_address=ACCOUNT, config=config, autodiscover=False, access_type=DELEGATE
)
from exchangelib.folders import Calendar, DistinguishedFolderId  # noqa: E402
from exchangelib.properties import Mailbox  # noqa: E402
from exchangelib.services import SubscribeToPush  # noqa: E402

for mailbox, expected in [
    (None, ErrorMissingEmailAddress),
    (MAILBOX, ErrorSubscriptionDelegateAccessNotSupported),
]:
    folder = Calendar(
        _distinguished_id=DistinguishedFolderId(
            id="calendar", mailbox=Mailbox(email_address=mailbox) if mailbox else None
        ),
        root=service_account.root,
    )
    try:
        list(
            SubscribeToPush(account=service_account).call(
                folders=[folder],
                event_types=SubscribeToPush.EVENT_TYPES,
                watermark=None,
                status_frequency=1,
                url=callback_url,
            )
        )
    except expected:
        pass
    except Exception as e:
        fail(f"subscribing without impersonation ({mailbox}): {e!r}, expected {expected.__name__}")
    else:
        fail(f"subscribing without impersonation ({mailbox}) was accepted")

# Under impersonation: accepted, on the mailbox's own calendar.
account = Account(
    primary_smtp_address=MAILBOX, config=config, autodiscover=False, access_type=IMPERSONATION
)
service = SendNotification(protocol=account.protocol)
subscription_id, watermark = account.calendar.subscribe_to_push(callback_url, status_frequency=1)
if not subscription_id or not watermark:
    fail(f"Subscribe answered {subscription_id!r}, {watermark!r}")
live = [s for s in stats()["subscriptions"] if s["id"] == subscription_id]
if len(live) != 1 or live[0]["mailbox"] != MAILBOX or live[0]["url"] != callback_url:
    fail(f"the simulator does not list the subscription: {stats()['subscriptions']!r}")

# Unsubscribe does not apply to a push subscription (Exchange: ErrorInvalidSubscription).
try:
    account.calendar.unsubscribe(subscription_id)
except ErrorInvalidSubscription:
    pass
else:
    fail("Unsubscribe ended a push subscription")

# A calendar change: a CreatedEvent (the calendar was empty), answered OK.
answers.put(service.ok_payload())
sim("POST", "/sim/calendars", row(9))
first = next_notification()
if first.subscription_id != subscription_id:
    fail(f"notification for {first.subscription_id!r}, expected {subscription_id!r}")
if first.previous_watermark != watermark:
    fail(f"PreviousWatermark {first.previous_watermark!r}, expected {watermark!r}")
if len(first.events) != 1 or not isinstance(first.events[0], CreatedEvent):
    fail(f"expected one CreatedEvent, got {first.events!r}")
event = first.events[0]
if event.item_id is None or event.parent_folder_id is None or event.timestamp is None:
    fail(f"the CreatedEvent lacks ItemId, ParentFolderId or TimeStamp: {event!r}")
if event.parent_folder_id.id != account.calendar.id:
    fail(f"ParentFolderId {event.parent_folder_id.id!r} is not the calendar {account.calendar.id!r}")

# A status notification on demand, its watermark following the last one.
answers.put(service.ok_payload())
sim("POST", f"/sim/status?mailbox={MAILBOX}")
status = next_notification()
if len(status.events) != 1 or not isinstance(status.events[0], StatusEvent):
    fail(f"expected one StatusEvent, got {status.events!r}")
if status.previous_watermark != event.watermark or status.events[0].watermark == event.watermark:
    fail("watermarks did not advance per notification")

# Another change, a ModifiedEvent, answered Unsubscribe: the subscription ends.
answers.put(service.unsubscribe_payload())
sim("POST", "/sim/calendars", row(9) + row(11))
last = next_notification()
if len(last.events) != 1 or not isinstance(last.events[0], ModifiedEvent):
    fail(f"expected one ModifiedEvent, got {last.events!r}")
deadline = time.monotonic() + WAIT
while any(s["id"] == subscription_id for s in stats()["subscriptions"]):
    if time.monotonic() > deadline:
        fail("the subscription outlived the subscriber's Unsubscribe")
    time.sleep(0.05)

# Unsubscribe ends a pull subscription.
pull_id, _ = account.calendar.subscribe_to_pull(timeout=10)
account.calendar.unsubscribe(pull_id)
if any(s["id"] == pull_id for s in stats()["subscriptions"]):
    fail("the pull subscription outlived Unsubscribe")

server.shutdown()
print("exchangelib: push subscription, SendNotification and Unsubscribe agree")
