#!/usr/bin/env python3
"""A libtorrent peer for trackd's end-to-end tests.

Usage: lt_client.py seed|download TORRENT SAVE_DIR LISTEN_PORT TIMEOUT_SECONDS

seed:     serve TORRENT's data from SAVE_DIR (hash-checked first) until killed
          or the timeout; exit 0 if killed, 1 on timeout or error.
download: fetch TORRENT into SAVE_DIR and exit 0 once every piece is
          downloaded and hash-checked; exit 1 on timeout or error.

The only peer source is the torrent's tracker: DHT, local service discovery,
peer exchange, UPnP and NAT-PMP are off. The session listens on
127.0.0.1:LISTEN_PORT only, over TCP only.
"""

import signal
import sys
import time

import libtorrent as lt


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in ("seed", "download"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, torrent_path, save_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    port, timeout = int(sys.argv[4]), float(sys.argv[5])
    deadline = time.monotonic() + timeout

    settings = {
        "listen_interfaces": "127.0.0.1:%d" % port,
        # If another process took the port since the test picked it,
        # libtorrent tries the next ones (max_retry_port_bind) and then one
        # the system picks; it announces whichever it bound.

        # The tracker is the only peer source.
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,

        # TCP only, like the other clients in these tests.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,

        # Every peer in these tests is 127.0.0.1. By default libtorrent
        # allows one connection per IP address: its peer list keys peers by
        # IP alone and it refuses a second connection from an IP it is
        # already connected to. With a single remote peer that happens not
        # to bite (the tests pass without it), but any second peer on
        # 127.0.0.1 (another client, or the seeder dialling back after its
        # own re-announce) would be dropped, so it is on.
        "allow_multiple_connections_per_ip": True,
        # Peers on ports below 1024 are skipped when this is on; it is off
        # by default in libtorrent 2.0, set explicitly so that no other
        # default can filter a loopback peer.
        "no_connect_privileged_ports": False,
        # ssrf_mitigation stays on (the default): it restricts tracker URLs
        # on localhost to the path /announce, which trackd's URL has, and
        # does not filter peers.
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.tracker_notification
        | lt.alert.category_t.connect_notification
        | lt.alert.category_t.peer_notification,
        "user_agent": "trackd-e2e libtorrent/" + lt.__version__,
    }
    ses = lt.session(settings)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent_path)
    params.save_path = save_dir
    # Per torrent too: no peer exchange, DHT or LSD.
    params.flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(params)
    log("added", params.ti.name(), "info hash", str(params.ti.info_hash()), "mode", mode, "port", port)

    last_status = 0.0
    last_reannounce = time.monotonic()
    seeding_logged = False
    while True:
        for a in ses.pop_alerts():
            log("alert", type(a).__name__, a.message())
        s = h.status()
        if s.errc.value() != 0:
            log("torrent error:", s.errc.message())
            return 1
        now = time.monotonic()
        if now - last_status >= 1:
            last_status = now
            log(
                "state=%s progress=%.3f peers=%d seeds=%d down=%d up=%d"
                % (s.state, s.progress, s.num_peers, s.num_seeds, s.total_payload_download, s.total_payload_upload)
            )
        if mode == "download":
            if s.is_seeding or s.is_finished:
                log("download complete: %d bytes" % s.total_wanted_done)
                # Tell the tracker, as a real client would ("completed").
                h.pause()
                end = time.monotonic() + 5
                while time.monotonic() < end:
                    for a in ses.pop_alerts():
                        log("alert", type(a).__name__, a.message())
                        if isinstance(a, lt.torrent_paused_alert):
                            end = 0
                    time.sleep(0.05)
                return 0
            # A downloader that announced before the seeder got no peers;
            # ask again soon instead of waiting the tracker's interval.
            if s.num_peers == 0 and s.state == lt.torrent_status.downloading and now - last_reannounce >= 3:
                last_reannounce = now
                h.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        elif s.is_seeding and not seeding_logged:
            seeding_logged = True
            log("seeding")
        if stop["signal"] is not None:
            log("stopping on signal", stop["signal"])
            return 0 if mode == "seed" else 1
        if now > deadline:
            log("timed out after %.0fs" % timeout)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
