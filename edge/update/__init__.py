"""Updates without bricking: releases side by side, an atomic ``current`` link, a health check
through the service manager, and an automatic rollback (``contactpoint update``).

- :mod:`edge.update.releases`: the release directories, the switch, the update's state file,
  the health check (:class:`~edge.update.releases.Supervisor`: systemd, or the tests' own) and
  the rollback;
- :mod:`edge.update.manifest`: the update manifest signed with the fleet's key (Ed25519);
- :mod:`edge.update.listen`: the device's side of ``cmd/update`` (verify, install, report);
- :mod:`edge.update.cli`: the ``contactpoint update`` command.
"""
