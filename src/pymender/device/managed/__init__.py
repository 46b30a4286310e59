"""Managed mode: the daemon that talks to a Mender server (``pymender daemon``).

One job per module: :mod:`.identity` (the identity script), :mod:`.devicekey` (the device key in
the data store), :mod:`.api` (HTTP to the server: TLS, bounded bodies, no scheme changes),
:mod:`.auth` (the signed auth request and the JWT), :mod:`.inventory` (the inventory scripts),
:mod:`.deployments` (``next``, status, log), :mod:`.backoff` (Mender's retry intervals with
jitter), :mod:`.record` (the deployment in progress, kept across reboots), :mod:`.daemon` (the
loop). The update itself walks the same state table as standalone mode
(:mod:`pymender.device.flow`) through :class:`pymender.device.install.Updater`.
"""
