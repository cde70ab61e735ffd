"""TLS, mutual TLS and bearer tokens on the stream, with certificates made in the test.

Cases:
- TLS: a client trusting the platform's CA streams normally; one trusting another CA never
  gets a stream (handshake refused) and stores nothing;
- mutual TLS: a client without a certificate is refused by the platform; with one signed
  by the CA the platform trusts it streams normally;
- bearer token: a wrong token is refused (UNAUTHENTICATED) and the client keeps retrying;
  a token rotated on disk is used by the very next connection, without a restart; the
  token never shows up in the logs or in the recorded disconnect reasons;
- a certificate without its key is a configuration error, reported before connecting.
"""

from __future__ import annotations

import logging
import pathlib

import pytest

from reconciler.devtools import platform
from reconciler.domain import errors
from reconciler.stream import client
from tests.integration import stream_support as ss


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ss.Pki:
    return ss.make_pki(tmp_path_factory.mktemp("pki"))


def _tls_server(pki: ss.Pki, mutual: bool, docs: int = 5) -> platform.PlatformServer:
    tls = platform.ServerTls(pki.server_cert.read_bytes(), pki.server_key.read_bytes(),
                             pki.ca.read_bytes() if mutual else None)
    return ss.server([ss.doc(i) for i in range(docs)], tls=tls)


@pytest.mark.parametrize(("trusted", "ok"), [("ca", True), ("other_ca", False)])
def test_tls_server_verified_against_the_ca(tmp_path: pathlib.Path, pki: ss.Pki, trusted: str,
                                            ok: bool) -> None:
    srv = _tls_server(pki, mutual=False)
    cfg = ss.fast_config(srv.address, tls=client.TlsFiles(ca=str(getattr(pki, trusted))))
    h = ss.harness(tmp_path, cfg)
    try:
        h.client.run(until_idle=1.5)
    finally:
        srv.stop(None)
    assert (h.stored_ids() == ss.ids(5)) is ok
    assert (srv.state.connections == 1) is ok
    if not ok:
        assert not h.stored_ids()
        assert all(r.startswith("UNAVAILABLE") for r in h.client.stats.disconnects[:-1])


@pytest.mark.parametrize("with_cert", [True, False])
def test_mutual_tls_requires_a_client_certificate(tmp_path: pathlib.Path, pki: ss.Pki,
                                                  with_cert: bool) -> None:
    srv = _tls_server(pki, mutual=True)
    tls = client.TlsFiles(ca=str(pki.ca), cert=str(pki.client_cert) if with_cert else None,
                          key=str(pki.client_key) if with_cert else None)
    h = ss.harness(tmp_path, ss.fast_config(srv.address, tls=tls))
    try:
        h.client.run(until_idle=1.5)
    finally:
        srv.stop(None)
    if with_cert:
        assert h.stored_ids() == ss.ids(5) and srv.state.connections == 1
    else:
        assert not h.stored_ids() and srv.state.connections == 0
        assert h.client.stats.connections >= 2  # it kept trying


def test_certificate_without_key_is_a_config_error(tmp_path: pathlib.Path, pki: ss.Pki) -> None:
    cfg = ss.fast_config("127.0.0.1:1", tls=client.TlsFiles(ca=str(pki.ca),
                                                            cert=str(pki.client_cert)))
    h = ss.harness(tmp_path, cfg)
    with pytest.raises(errors.ConfigError, match="both a client certificate and its key"):
        h.client.run(until_idle=1.0)


def test_rotated_token_is_used_by_the_next_connection(tmp_path: pathlib.Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    old, new = "tok-old-5f1b0c", "tok-new-9a7d3e"
    server_token = tmp_path / "expected"
    client_token = tmp_path / "token"
    server_token.write_text(old + "\n")
    client_token.write_text(old + "\n")
    srv = ss.server([ss.doc(0)], token_file=str(server_token))
    port = srv.port
    h = ss.harness(tmp_path, ss.fast_config(srv.address, token_file=str(client_token))).start()
    try:
        ss.wait(lambda: len(h.stored_ids()) == 1, 10, "first connection")
        # The platform rotates first: the client's next connection, still on the old
        # token, is refused, and it keeps retrying.
        server_token.write_text(new)
        srv.stop(None)
        srv = ss.server([ss.doc(0), ss.doc(1)], token_file=str(server_token), port=port)
        ss.wait(lambda: srv.state.auth_failures >= 2, 10, "refused connections")
        assert not srv.state.hellos
        client_token.write_text(new)  # the Secret is updated on disk
        ss.wait(lambda: len(h.stored_ids()) == 2, 10, "a connection with the new token")
    finally:
        h.stop()
        srv.stop(None)
    assert len(srv.state.hellos) == 1
    assert any("UNAUTHENTICATED" in r for r in h.client.stats.disconnects)
    for secret in (old, new):
        assert secret not in caplog.text
        assert not any(secret in r for r in h.client.stats.disconnects)
