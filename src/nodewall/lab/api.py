"""The lab's client of its control plane: HTTPS (the lab's own CA) with the admin token, every
connection made inside the server's namespace, each refusal raised with the API's message."""

from __future__ import annotations

from typing import Any

import httpx

from nodewall.lab.netns import LabError, entered


class LabApi:
    def __init__(self, ns: str, url: str, token: str, ca_file: str) -> None:
        self.ns = ns
        self._client = httpx.Client(base_url=url, timeout=30, verify=ca_file,
                                    headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)
             ) -> Any:
        with entered(self.ns):
            response = self._client.request(method, path, json=body)
        if response.status_code not in ok:
            raise LabError(f"{method} {path}: {response.status_code} {response.text[:400]}")
        return response.json()

    def healthy(self) -> bool:
        try:
            with entered(self.ns):
                return self._client.get("/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def policy(self, node: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/node/{node}/policy")  # type: ignore[no-any-return]

    def close(self) -> None:
        self._client.close()
