"""``reconciler webhook``: the live-migration admission webhook (``runtime.webhook``),
configured by flags over the ``DAKR_*`` environment the chart sets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconciler.cli import flags
from reconciler.config import env, settings
from reconciler.runtime import webhook

DESCRIPTION = """\
The live-migration admission webhook: a mutating admission webhook (AdmissionReview v1,
over HTTPS) that gives pods created for a workload the container resources its live
migration set in place.

A LiveMigration resizes a workload's running pods in place (pods/{name}/resize) instead
of changing its pod template, which would restart every pod. Pods created later (a
scale-up, a rescheduled or evicted pod, a node drain) come from the template, with the
old values. The API server calls this webhook for every pod creation; when the pod's
controller (a Deployment's ReplicaSet, a StatefulSet, a DaemonSet) has a LiveMigration
that is Applying or Applied with `persist: webhook`, the answer sets those values on the
pod, as the Vertical Pod Autoscaler's admission controller does. Nothing else is ever
changed, and no pod is ever refused: a value that would change the pod's QoS class or put
a request above its limit is left out, with a warning.

It is needed only when live migrations persist through the webhook (the policy's default,
`execution.liveMigration.persist: webhook`); the Helm chart deploys it with
liveMigration.enabled=true, with a MutatingWebhookConfiguration whose failurePolicy is
Ignore. It reads the WorkloadRecommendations (--store kube: listed and watched, RBAC get,
list, watch) or a local SQLite store, and answers from memory, without API calls.
Serves POST /mutate, GET /healthz, GET /readyz (ready once the recommendations are
listed) and GET /metrics on --port over TLS; the certificate and key files are loaded
again when they change (cert-manager or the chart's Secret rotates them)."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "webhook", help="the live-migration admission webhook: new pods keep the values "
                        "resized in place",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = settings.WebhookSettings
    p.add_argument("--port", type=int, default=None, metavar="PORT",
                   help=f"HTTPS port (default: $DAKR_WEBHOOK_PORT, else {d.port})")
    p.add_argument("--address", default=None, metavar="HOST",
                   help="address to listen on (default: every interface)")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="PEM certificate (chain) the webhook serves; required "
                        "(default: $DAKR_WEBHOOK_TLS_CERT)")
    p.add_argument("--tls-key", default=None, metavar="FILE",
                   help="PEM private key of --tls-cert; required "
                        "(default: $DAKR_WEBHOOK_TLS_KEY)")
    p.add_argument("--store", default=None, metavar="kube|sqlite[:PATH]",
                   help="where the recommendations are: kube (the custom resources) or a "
                        "local SQLite file (sqlite: STATE_DIR/reconciler.db) (default: kube "
                        "when $DAKR_STORE is kubernetes, else sqlite)")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                   help="where --store sqlite's file is (default: $DAKR_WORK_DIR, else "
                        f"{env.state_dir(env.environ())})")
    p.add_argument("--metrics-addr", default=None, metavar="[HOST]:PORT",
                   help="serve /metrics over plain HTTP here too, for a scraper without "
                        "the webhook's CA (default: $DAKR_METRICS_ADDR, else only on the "
                        "TLS port)")
    flags.add_kube(p)
    p.set_defaults(func=cmd_webhook)


def webhook_settings(args: argparse.Namespace, environ: Any) -> settings.WebhookSettings:
    """Flags over the environment over the defaults."""
    base: dict[str, Any] = env.webhook_defaults(environ)
    given = {k: v for k, v in (("port", args.port), ("address", args.address),
                               ("tls_cert", args.tls_cert), ("tls_key", args.tls_key),
                               ("metrics_addr", args.metrics_addr), ("store", args.store),
                               ("state_dir", args.state_dir)) if v is not None}
    merged = {**base, **given}
    state_dir = Path(merged.pop("state_dir", None) or env.state_dir(environ))
    store = str(merged.pop("store", "") or "sqlite")
    if store in ("sqlite", "sqlite:"):
        store = f"sqlite:{state_dir / 'reconciler.db'}"
    elif store == "kubernetes":
        store = "kube"
    return settings.WebhookSettings(store=store, kube=flags.kube_settings(args, environ),
                                    **merged)


def cmd_webhook(args: argparse.Namespace) -> int:
    environ = env.environ()
    return webhook.Webhook(webhook_settings(args, environ)).run()
