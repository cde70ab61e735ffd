"""The chart's live-migration admission webhook (liveMigration.*), rendered and linted with
the real Helm library.

Cases:
- off (the default, and other combinations): no webhook object at all (one Deployment, no
  Service, Secret, MutatingWebhookConfiguration, Certificate or Issuer, no webhook RBAC);
  the operator is told so (DAKR_LIVE_WEBHOOK "false", read by config/env.py as
  `live.webhook` False); NOTES say there is no webhook;
- on: a ServiceAccount of its own bound to a ClusterRole that only reads
  workloadrecommendations; a Deployment running `reconciler webhook` from the same image,
  configured through DAKR_* variables that `reconciler webhook` reads into its settings
  (port, the mounted certificate files, the kube store, a metrics address), HTTPS probes on
  a declared port, the same locked-down security context, the certificate Secret mounted
  read-only; a Service on 443 selecting exactly the webhook's pods (and the operator's
  selector not them); the MutatingWebhookConfiguration: failurePolicy Ignore,
  timeoutSeconds 2, sideEffects None, admissionReviewVersions [v1], reinvocationPolicy
  Never, CREATE of core v1 pods only, namespaceSelector NotIn the release namespace and
  kube-system (plus liveMigration.webhook.excludeNamespaces), the Service's /mutate on 443;
  the operator told (DAKR_LIVE_WEBHOOK "true"); NOTES name what is deployed;
- the chart-generated certificate: a kubernetes.io/tls Secret whose ca.crt is the
  caBundle, a leaf signed by that CA for the Service's DNS names, valid certificateDays;
  served by the real webhook server, a client verifying with the caBundle and the name the
  API server uses (<service>.<namespace>.svc) completes the handshake;
- cert-manager: a self-signed Issuer and a Certificate writing the very Secret the
  Deployment mounts, for the Service's names; the webhook configuration carries
  cert-manager.io/inject-ca-from and no caBundle, and the chart writes no Secret; an
  issuerRef uses that issuer and creates none;
- rbac.create=false drops the webhook's RBAC; serviceAccount.create=false runs it as the
  named ServiceAccount; names stay within 63 characters under a 63-character fullname;
- every combination above lints with no warning.
"""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from reconciler.cli import main as cli_main
from reconciler.cli import webhook as cli_webhook
from reconciler.config import env as config_env
from reconciler.runtime import webhook
from tests.integration.chart.support import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    Rendered,
    render,
    rules_table,
)

FULLNAME = f"{RELEASE}-dakr-reconciler"
HOOK = f"{FULLNAME}-webhook"
GROUP = "dakr.devzero.io"
ON = {"liveMigration": {"enabled": True}}
CERT_MANAGER = {"liveMigration": {"enabled": True, "certManager": {"enabled": True}}}
VARIANTS: dict[str, dict[str, Any]] = {
    "on": ON,
    "cert-manager": CERT_MANAGER,
    "cert-manager-issuer": {"liveMigration": {"enabled": True, "certManager": {
        "enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}},
    "excluded-namespaces": {"liveMigration": {"enabled": True, "webhook": {
        "excludeNamespaces": ["istio-system", "kube-system"]}}},
    "direct-drain": {"mode": "direct", "nodeDrain": {"enabled": True}, **ON},
    "no-rbac": {"rbac": {"create": False}, **ON},
    "existing-sa": {"serviceAccount": {"create": False, "name": "ops"}, **ON},
    "long-name": {"fullnameOverride": "x" * 63, **ON},
}
OFF: dict[str, dict[str, Any]] = {
    "defaults": {},
    "direct": {"mode": "direct"},
    "cert-manager-alone": {"liveMigration": {"enabled": False,
                                             "certManager": {"enabled": True}}},
}
WEBHOOK_KINDS = {"MutatingWebhookConfiguration", "Certificate", "Issuer", "Service",
                 "Secret"}


def deployments(r: Rendered) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in r.all("Deployment")}


def named(r: Rendered, kind: str, name: str = HOOK) -> dict[str, Any]:
    (found,) = [o for o in r.all(kind) if o["metadata"]["name"] == name]
    return found


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def operator_env(r: Rendered) -> dict[str, str]:
    pod = deployments(r)[FULLNAME]["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "reconciler"]
    return env_of(c)


def hook_container(r: Rendered, name: str = HOOK) -> dict[str, Any]:
    (c,) = deployments(r)[name]["spec"]["template"]["spec"]["containers"]
    return dict(c)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("variant", VARIANTS)
def test_lints_without_warnings(helm: types.ModuleType, variant: str) -> None:
    report = helm.lint(CHART_DIR, VARIANTS[variant], strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# --------------------------------------------------------------------------- off


@pytest.mark.parametrize("variant", OFF)
def test_off_renders_no_webhook(chart: Any, variant: str) -> None:
    r = render(chart, OFF[variant])
    assert set(deployments(r)) == {FULLNAME}
    assert not {o["kind"] for o in r.objects} & WEBHOOK_KINDS
    assert not [o for o in r.objects if "webhook" in o["metadata"]["name"]]
    env = operator_env(r)
    assert env["DAKR_LIVE_WEBHOOK"] == "false"
    assert config_env.live_settings(env).webhook is False
    assert "Live migration: no admission webhook (liveMigration.enabled=false)" in r.notes


# --------------------------------------------------------------------------- on


def test_on_deploys_the_webhook(chart: Any) -> None:
    r = render(chart, ON)
    assert set(deployments(r)) == {FULLNAME, HOOK}
    env = operator_env(r)
    assert env["DAKR_LIVE_WEBHOOK"] == "true"
    assert config_env.live_settings(env).webhook is True

    # Its own ServiceAccount, reading recommendations and nothing else.
    sa = named(r, "ServiceAccount")
    assert sa["metadata"]["namespace"] == NAMESPACE
    assert rules_table(named(r, "ClusterRole")) == {
        (GROUP, "workloadrecommendations"): frozenset({"get", "list", "watch"})}
    binding = named(r, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": HOOK}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": HOOK,
                                    "namespace": NAMESPACE}]

    # The Deployment: the same image, `reconciler webhook`, locked down.
    dep = deployments(r)[HOOK]
    pod = dep["spec"]["template"]["spec"]
    c = hook_container(r)
    assert pod["serviceAccountName"] == HOOK
    assert c["image"] == hook_container_image(r) and c["args"] == ["webhook"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"webhook": 8443, "metrics": 8082}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "webhook", "scheme": "HTTPS"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert set(mounts) <= set(volumes)
    assert volumes["tls"]["secret"]["secretName"] == f"{HOOK}-tls"
    assert mounts["tls"]["readOnly"] is True

    # What the container is told is what `reconciler webhook` runs with.
    env = env_of(c)
    args = cli_main.build_parser().parse_args(["webhook"])
    cfg = cli_webhook.webhook_settings(args, env)
    assert cfg.port == ports["webhook"] and cfg.store == "kube"
    assert cfg.tls_cert == f"{mounts['tls']['mountPath']}/tls.crt"
    assert cfg.tls_key == f"{mounts['tls']['mountPath']}/tls.key"
    assert cfg.metrics_addr == f":{ports['metrics']}"

    # The Service selects the webhook's pods, and only them.
    svc = named(r, "Service")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert selects(svc["spec"]["selector"], pod_labels)
    operator = deployments(r)[FULLNAME]
    assert not selects(operator["spec"]["selector"]["matchLabels"], pod_labels)
    assert not selects(svc["spec"]["selector"],
                       operator["spec"]["template"]["metadata"]["labels"])
    https = {p["name"]: p for p in svc["spec"]["ports"]}["https"]
    assert (https["port"], https["targetPort"]) == (443, "webhook")

    # The webhook configuration.
    mwc = named(r, "MutatingWebhookConfiguration")
    (hook,) = mwc["webhooks"]
    assert hook["name"] == "live-migration.dakr.devzero.io"
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 2
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "Never"
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"],
                              "operations": ["CREATE"], "resources": ["pods"],
                              "scope": "Namespaced"}]
    assert hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": [NAMESPACE, "kube-system"]}]}
    assert hook["clientConfig"]["service"] == {"name": HOOK, "namespace": NAMESPACE,
                                               "path": "/mutate", "port": 443}
    assert "annotations" not in mwc["metadata"]

    assert f"Live migration: the admission webhook {HOOK}" in r.notes
    assert f"Secret {HOOK}-tls, 3650 days" in r.notes


def hook_container_image(r: Rendered) -> str:
    pod = deployments(r)[FULLNAME]["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "reconciler"]
    return str(c["image"])


def test_excluded_namespaces_join_the_selector(chart: Any) -> None:
    r = render(chart, VARIANTS["excluded-namespaces"])
    (hook,) = named(r, "MutatingWebhookConfiguration")["webhooks"]
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["values"] == [NAMESPACE, "kube-system", "istio-system"]
    assert f"pods in\n{NAMESPACE}, kube-system, istio-system." in r.notes


# --------------------------------------------------------------------------- certificate


def _serves(cert_pem: bytes, key_pem: bytes, ca_pem: bytes, server_name: str,
            tmp: Path) -> str:
    """Serve the pair with the webhook's own server; handshake as the API server would
    (verifying with the caBundle, for ``server_name``). The TLS version negotiated."""
    (tmp / "tls.crt").write_bytes(cert_pem)
    (tmp / "tls.key").write_bytes(key_pem)
    server = webhook.WebhookServer("127.0.0.1", 0, webhook.TlsFiles(
        str(tmp / "tls.crt"), str(tmp / "tls.key")), dict, webhook.WebhookMetrics())
    try:
        ctx = ssl.create_default_context(cadata=ca_pem.decode())
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            version = str(tls.version())
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
            return version
    finally:
        server.close()


def test_chart_generated_certificate(chart: Any, tmp_path: Path) -> None:
    r = render(chart, ON)
    secret = named(r, "Secret", f"{HOOK}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    (hook,) = named(r, "MutatingWebhookConfiguration")["webhooks"]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == data["ca.crt"]

    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert leaf.signature_hash_algorithm is not None
    public.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(),
                  leaf.signature_hash_algorithm)  # raises unless the CA signed it
    names = leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    svc = f"{HOOK}.{NAMESPACE}.svc"
    assert set(names) == {HOOK, f"{HOOK}.{NAMESPACE}", svc, f"{svc}.cluster.local"}
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / datetime.timedelta(days=1)
    assert 3649 <= days <= 3651

    assert _serves(data["tls.crt"], data["tls.key"], data["ca.crt"], svc,
                   tmp_path).startswith("TLSv1.")
    with pytest.raises(ssl.SSLCertVerificationError):
        _serves(data["tls.crt"], data["tls.key"], data["ca.crt"], "elsewhere.example",
                tmp_path)


def test_cert_manager_certificate(chart: Any) -> None:
    r = render(chart, CERT_MANAGER)
    assert not r.all("Secret")
    issuer = named(r, "Issuer", f"{HOOK}-selfsigned")
    assert issuer["spec"] == {"selfSigned": {}}
    assert issuer["metadata"]["namespace"] == NAMESPACE
    cert = named(r, "Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["metadata"]["namespace"] == NAMESPACE
    volumes = {v["name"]: v for v in
               deployments(r)[HOOK]["spec"]["template"]["spec"]["volumes"]}
    assert cert["spec"]["secretName"] == volumes["tls"]["secret"]["secretName"]
    svc = f"{HOOK}.{NAMESPACE}.svc"
    assert svc in cert["spec"]["dnsNames"] and cert["spec"]["commonName"] == svc
    assert cert["spec"]["issuerRef"] == {"name": f"{HOOK}-selfsigned", "kind": "Issuer",
                                         "group": "cert-manager.io"}
    mwc = named(r, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{HOOK}"}
    (hook,) = mwc["webhooks"]
    assert "caBundle" not in hook["clientConfig"]
    assert hook["failurePolicy"] == "Ignore"
    assert "issued and renewed by cert-manager" in r.notes

    given = render(chart, VARIANTS["cert-manager-issuer"])
    assert not given.all("Issuer")
    assert named(given, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


# --------------------------------------------------------------------------- toggles


def test_rbac_and_service_account_toggles(chart: Any) -> None:
    r = render(chart, VARIANTS["no-rbac"])
    assert not r.all("ClusterRole") and not r.all("ClusterRoleBinding")
    assert HOOK in deployments(r)

    r = render(chart, VARIANTS["existing-sa"])
    assert not r.all("ServiceAccount")
    assert deployments(r)[HOOK]["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert named(r, "ClusterRoleBinding")["subjects"][0]["name"] == "ops"


def test_names_fit_with_a_long_fullname(chart: Any) -> None:
    r = render(chart, VARIANTS["long-name"])
    ours = {o["metadata"]["name"] for o in r.objects if o["kind"] in WEBHOOK_KINDS | {
        "Certificate", "Deployment", "ClusterRole", "ServiceAccount"}}
    assert all(len(n) <= 63 for n in ours), sorted(ours, key=len)[-3:]
    hook = f"{'x' * 51}-webhook"
    assert set(deployments(r)) == {"x" * 63, hook}  # two names, not one truncated twice
    assert named(r, "Secret", f"{hook}-tls")["type"] == "kubernetes.io/tls"
