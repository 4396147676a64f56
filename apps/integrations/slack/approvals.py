"""Approvals in Slack: a run paused at ``Step.human_in_the_loop(..., slack_channel=...)``
posts its message with Approve / Reject buttons; a click approves or rejects the run.

The engine knows nothing of Slack: it sends ``apps.runs.hooks.run_paused`` after the pause
commits, and ``IntegrationsConfig.ready`` connects ``on_run_paused`` to it. One
``SlackApproval`` row per (run, step) makes the post happen once: a pause seen again
finds the row posted and posts nothing. A post that fails (Slack down, unknown channel)
leaves the row unposted with its error; the run stays paused, and the recovery passes
(``hooks.recovery_swept``) post it again, backing off after repeated failures. A post is
repeated only if a process dies between Slack's answer and recording it: then the channel
gets the message twice, which beats a run waiting for a message nobody saw.

A button approves with no input. A step with an ``input_schema`` is approved with the
schema's defaults (``{}``); when the schema has required fields the click is refused and
the message says so (approve it with the API or ``manage.py approve --input-json``).

``slack_approvers`` on the step limits whose clicks count. The list is read from the step
of the run's pinned version, never from the message or the click, so nothing done in
Slack can widen it; anyone else's click changes nothing and says so in the message.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from pydantic import BaseModel

from apps.core.exceptions import ApplicationError, Conflict
from apps.integrations.models import SlackApproval
from apps.integrations.slack import client
from apps.runs.models import Run
from apps.runs.services import runs as run_services
from flowops.exceptions import SlackError

log = logging.getLogger("flowops.slack")

APPROVE = "flowops_approve"
REJECT = "flowops_reject"
ACTIONS = (APPROVE, REJECT)
ACTIONS_BLOCK = "flowops_approval"
# Longer than the client's 10 s timeout: a claim this old belongs to a process that died.
POST_CLAIM_S = 60
SWEEP_BATCH = 20  # posts retried per recovery pass; the rest wait for the next one
# After a failed post the next recovery pass tries again; after more failures the sweep
# waits RETRY_BASE_S, doubling up to RETRY_MAX_S, so a Slack outage or a wrong channel is
# not hammered every pass. The admin's "post again" does not wait.
RETRY_BASE_S = 60
RETRY_MAX_S = 3600
SECTION_CHARS = 2900  # Slack refuses a section text over 3000 characters

Status = SlackApproval.Status


# -- asking ------------------------------------------------------------------------------
def on_run_paused(sender: Any = None, *, run_id: str, step_key: str, step: Any,
                  **kwargs: Any) -> None:
    """``hooks.run_paused`` receiver: ask in Slack if the step names a channel."""
    channel = getattr(step, "slack_channel", None)
    if channel:
        approval_request(run_id=run_id, step_key=step_key, channel=channel)


def approval_request(*, run_id: str, step_key: str, channel: str) -> SlackApproval:
    """Make sure the run's question at ``step_key`` is in Slack, posting it at most once."""
    approval, created = SlackApproval.objects.get_or_create(
        run_id=run_id, step_key=step_key, defaults={"channel": channel})
    if not created and approval.status != Status.PENDING:
        # Paused here again after a decision (resumed after a rejection): a new question.
        SlackApproval.objects.filter(pk=approval.pk, status=approval.status).update(
            status=Status.PENDING, channel=channel, channel_id="", ts="", decided_by="",
            decided_by_name="", decided_at=None, posted_at=None, post_error="")
        approval.refresh_from_db()
    approval_post(approval)
    return approval


def approval_post(approval: SlackApproval) -> bool:
    """Post the request if it is not posted yet and the run still waits; True if posted.

    Never raises for Slack's failures: the error is kept on the row for the next try.
    """
    run = Run.objects.select_related("version__workflow").get(pk=approval.run_id)
    if not waits_at(run, approval.step_key) or not _claim_post(approval):
        return False
    try:
        posted = client.call("chat_postMessage", channel=client.channel_id(approval.channel),
                             text=f"Approval needed: {run.pause_message}",
                             blocks=request_blocks(run, approval.step_key))
    except SlackError as exc:
        log.warning("could not post the approval of run %s step %s to %s: %s",
                    run.id, approval.step_key, approval.channel, exc)
        SlackApproval.objects.filter(pk=approval.pk).update(
            post_claimed_at=None, post_error=str(exc),
            next_post_at=timezone.now() + retry_delay(approval.post_attempts + 1))
        return False
    SlackApproval.objects.filter(pk=approval.pk).update(
        ts=posted["ts"], channel_id=posted["channel"], posted_at=timezone.now(),
        post_claimed_at=None, post_error="", next_post_at=None)
    approval.refresh_from_db()
    return True


def _claim_post(approval: SlackApproval) -> bool:
    stale = timezone.now() - timedelta(seconds=POST_CLAIM_S)
    return bool(SlackApproval.objects.filter(pk=approval.pk, ts="", status=Status.PENDING)
                .filter(Q(post_claimed_at__isnull=True) | Q(post_claimed_at__lt=stale))
                .update(post_claimed_at=timezone.now(), post_attempts=F("post_attempts") + 1))


def retry_delay(attempts: int) -> timedelta:
    """How long the sweep waits after ``attempts`` failed posts: none after the first."""
    if attempts <= 1:
        return timedelta(0)
    return timedelta(seconds=min(RETRY_BASE_S * 2 ** (attempts - 2), RETRY_MAX_S))


def waits_at(run: Run, step_key: str) -> bool:
    return run.status == Run.Status.PAUSED and run.paused_step_key == step_key


def approvals_post_unposted(sender: Any = None, **kwargs: Any) -> int:
    """``hooks.recovery_swept`` receiver: post again what failed to post. Returns posts."""
    if not settings.SLACK_BOT_TOKEN:  # Slack is not set up here: nothing could be posted
        return 0
    unposted = (SlackApproval.objects
                .filter(ts="", status=Status.PENDING, run__status=Run.Status.PAUSED,
                        run__paused_step_key=F("step_key"))
                .filter(Q(next_post_at__isnull=True) | Q(next_post_at__lte=timezone.now()))
                .order_by("post_attempts", "id")[:SWEEP_BATCH])
    return sum(approval_post(approval) for approval in unposted)


def on_approval_decided(sender: Any = None, *, run_id: str, step_key: str, approved: bool,
                        decided_by: str, **kwargs: Any) -> None:
    """``hooks.approval_decided`` receiver: a decision made outside Slack (API, admin, CLI)
    closes the Slack question too, so its buttons do not linger."""
    if decided_by.startswith("slack:"):
        return  # a click: approval_decide records it and updates the message it came from
    decided = SlackApproval.objects.filter(
        run_id=run_id, step_key=step_key, status=Status.PENDING).update(
        status=Status.APPROVED if approved else Status.REJECTED, decided_by=decided_by,
        decided_by_name="", decided_at=timezone.now())
    approval = SlackApproval.objects.filter(run_id=run_id, step_key=step_key).first()
    if decided and approval.is_posted:
        run = Run.objects.select_related("version__workflow").get(pk=run_id)
        _update_message((approval.channel_id, approval.ts), run, approval)


# -- answering ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Click:
    """What a button click did: ``outcome`` (approved, rejected, already_decided,
    refused, not_allowed, not_waiting, unknown) and a sentence for the logs and the
    response."""

    outcome: str
    message: str


def approval_decide(*, run_id: str, step_key: str, approve: bool, user_id: str,
                    user_name: str = "", channel_id: str = "", ts: str = "") -> Click:
    """Approve or reject the run from a Slack button, then update the message.

    ``channel_id`` and ``ts``: the message clicked (default: the one posted).
    """
    approval = SlackApproval.objects.filter(run_id=run_id, step_key=step_key).first()
    if approval is None:
        log.warning("Slack click for unknown approval: run %r step %r", run_id, step_key)
        return Click("unknown", f"no Slack approval for run {run_id!r} at step {step_key!r}; "
                                "nothing changed")
    where = (channel_id or approval.channel_id, ts or approval.ts)
    run = Run.objects.select_related("version__workflow").get(pk=run_id)
    if approval.status != Status.PENDING:
        _update_message(where, run, approval)
        return Click("already_decided", f"already {approval.status} by "
                                        f"{approval.decided_by_name or approval.decided_by}")
    approvers = approvers_at(run, step_key)
    if approvers is not None and user_id not in approvers:
        return _not_allowed(where, run, approval, user_id=user_id, approvers=approvers)
    try:
        decided = _decide(approval, run, approve=approve, user_id=user_id, user_name=user_name)
    except Conflict as exc:
        _update_message(where, run, approval, note=f"This run no longer waits for this "
                                                   f"approval: {exc.message}.")
        return Click("not_waiting", exc.message)
    except ApplicationError as exc:  # the step's input_schema needs input a button lacks
        note = (f"{mention(user_id)} could not approve from Slack: {exc.message}. Approve it with "
                f"input: `python manage.py approve {run_id} --input-json '{{...}}'` or "
                f"`POST /api/runs/{run_id}/approve`.")
        _update_message(where, run, approval, note=note)
        return Click("refused", exc.message)
    if decided is None:  # another click won the race
        approval.refresh_from_db()
        _update_message(where, run, approval)
        return Click("already_decided", f"already {approval.status}")
    _update_message(where, run, decided)
    if where != (decided.channel_id, decided.ts):  # a click on the message of an earlier ask
        _update_message((decided.channel_id, decided.ts), run, decided)
    return Click(decided.status, f"{decided.status} by {user_name or user_id}")


def _not_allowed(where: tuple[str, str], run: Run, approval: SlackApproval, *, user_id: str,
                 approvers: tuple[str, ...]) -> Click:
    log.warning("Slack user %s may not decide run %s step %s (approvers: %s)", user_id,
                run.id, approval.step_key, ", ".join(approvers))
    note = f"{mention(user_id)} may not decide this; approvers: {mentions(approvers)}"
    _update_message(where, run, approval, note=note)
    return Click("not_allowed", f"Slack user {user_id} may not decide this approval; "
                                f"approvers: {', '.join(approvers)}")


def _decide(approval: SlackApproval, run: Run, *, approve: bool, user_id: str,
            user_name: str) -> SlackApproval | None:
    """Record the decision and apply it to the run in one transaction; None if lost."""
    who = f"slack:{user_id}"
    with transaction.atomic():
        won = SlackApproval.objects.filter(pk=approval.pk, status=Status.PENDING).update(
            status=Status.APPROVED if approve else Status.REJECTED, decided_by=who,
            decided_by_name=user_name, decided_at=timezone.now())
        if not won:
            return None
        if approve:
            # background: the run continues on the dispatcher or the broker, never in the
            # request that Slack waits for (3 s).
            run_services.run_approve(run_id=run.id, step_key=approval.step_key,
                                     input=button_input(run, approval.step_key),
                                     decided_by=who, background=True)
        else:
            run_services.run_reject(run_id=run.id, step_key=approval.step_key,
                                    reason=f"in Slack by {user_name or user_id} ({user_id})",
                                    decided_by=who)
    approval.refresh_from_db()
    return approval


def button_input(run: Run, step_key: str) -> Any:
    """A button carries no input: a schema's defaults (``{}``), else None."""
    schema = _step_at(run, step_key).output_annotation()
    return {} if isinstance(schema, type) and issubclass(schema, BaseModel) else None


def approvers_at(run: Run, step_key: str) -> tuple[str, ...] | None:
    """The Slack user ids who may decide the step; None: anyone in the channel."""
    return getattr(_step_at(run, step_key), "slack_approvers", None)


def _step_at(run: Run, step_key: str) -> Any:
    # The run's pinned version, as the engine runs it: a script edited since cannot change
    # who may decide a run already waiting.
    from apps.runs.services.execution import loaded_for

    ref, _ = loaded_for(run).plan.locate(step_key)
    return ref.node.step


def _update_message(where: tuple[str, str], run: Run, approval: SlackApproval,
                    note: str = "") -> None:
    channel_id, ts = where
    if not (channel_id and ts):
        return
    if approval.status == Status.PENDING:
        blocks, text = request_blocks(run, approval.step_key, note=note), note
    else:
        blocks, text = decided_blocks(run, approval), decision_text(approval)
    try:
        client.call("chat_update", channel=channel_id, ts=ts, text=text or run.pause_message,
                    blocks=blocks)
    except SlackError as exc:  # the decision stands; only its display is stale
        log.warning("could not update the Slack message of run %s: %s", run.id, exc)


# -- messages ----------------------------------------------------------------------------
def escape(text: str) -> str:
    """Slack's mrkdwn control characters (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _question_blocks(run: Run, step_key: str) -> list[dict[str, Any]]:
    message = escape(run.pause_message or "Approval needed")[:SECTION_CHARS]
    where = (f"Workflow *{escape(run.version.workflow.slug)}* · run `{run.id}` · "
             f"step `{escape(step_key)}`")
    return [{"type": "section", "text": {"type": "mrkdwn", "text": message}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": where}]}]


def request_blocks(run: Run, step_key: str, note: str = "") -> list[dict[str, Any]]:
    value = json.dumps({"run": run.id, "step": step_key})
    buttons = [
        {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
         "text": {"type": "plain_text", "text": "Reject"}},
    ]
    blocks = _question_blocks(run, step_key)
    approvers = approvers_at(run, step_key)
    if approvers:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"Only {mentions(approvers)} may decide this."}]})
    if note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK, "elements": buttons})
    return blocks


def mention(user_id: str) -> str:
    return f"<@{escape(user_id)}>"  # Slack shows the user's name


def mentions(user_ids: tuple[str, ...]) -> str:
    return ", ".join(mention(user_id) for user_id in user_ids)


def decision_text(approval: SlackApproval) -> str:
    mark = ":white_check_mark:" if approval.status == Status.APPROVED else ":x:"
    who = approval.decided_by or "someone outside Slack"
    who = mention(who.removeprefix("slack:")) if who.startswith("slack:") else escape(who)
    return f"{mark} {approval.status.capitalize()} by {who}"


def decided_blocks(run: Run, approval: SlackApproval) -> list[dict[str, Any]]:
    return [*_question_blocks(run, approval.step_key),
            {"type": "section", "text": {"type": "mrkdwn", "text": decision_text(approval)}}]
