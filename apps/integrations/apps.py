from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "apps.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        # The engine sends these hooks and never imports an integration (apps/runs/hooks.py).
        from apps.integrations.slack import approvals
        from apps.runs import hooks

        hooks.run_paused.connect(approvals.on_run_paused,
                                 dispatch_uid="slack-approval-request")
        hooks.approval_decided.connect(approvals.on_approval_decided,
                                       dispatch_uid="slack-approval-close")
        hooks.recovery_swept.connect(approvals.approvals_post_unposted,
                                     dispatch_uid="slack-approval-retry")
