"""Stand-in server images built from Debian's own packages, for engines that cannot reach a registry.

Each image is a minimal bookworm root (mmdebstrap) with one server package and a small entrypoint
(``standin/*-entrypoint.sh``) honouring the official images' POSTGRES_* / MARIADB_* variables, made an
image with ``docker import``.  Building takes a minute or so per image, so the image is saved
(``docker save``) under ``~/.cache/race-harness/images`` and loaded from there next time; the tag
carries a hash of the recipe, so changing an entrypoint builds a new image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).resolve().parent / "standin"
_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EXCLUDE = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
BUILD_TIMEOUT = 900.0


@dataclass(frozen=True)
class Recipe:
    """One stand-in image: the Debian packages, the entrypoint and the image settings."""

    service: str  # the harness service it serves: postgres, mysql, redis
    name: str
    package: str
    entrypoint: str
    cmd: str
    env: tuple[str, ...] = ()
    #: shell commands run on the finished root ($1 is its path): remove what package scripts initialised
    cleanup: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (path in the image, content)

    def key(self) -> str:
        text = (STANDIN / self.entrypoint).read_text()
        return hashlib.sha256(json.dumps([self.__dict__ | {"entrypoint": text}, _EXCLUDE],
                                         sort_keys=True, default=list).encode()).hexdigest()[:10]

    @property
    def tag(self) -> str:
        return f"race-harness/{self.name}:bookworm-{self.key()}"


RECIPES: dict[str, Recipe] = {
    "postgres": Recipe(
        "postgres", "postgres-standin", "postgresql-15", "postgres-entrypoint.sh", "postgres",
        env=(f"PATH=/usr/lib/postgresql/15/bin:{_BASE_PATH}", "PGDATA=/var/lib/postgresql/data"),
        cleanup=('rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"',),
    ),
    "mysql": Recipe(
        "mysql", "mariadb-standin", "mariadb-server", "mariadb-entrypoint.sh", "mariadbd",
        env=(f"PATH={_BASE_PATH}",),
        cleanup=('rm -rf "$1/var/lib/mysql"', 'mkdir -p "$1/var/lib/mysql"'),
        # like the official image: listen on every interface of the container (the harness narrows it
        # to 127.0.0.1 with --bind-address when the container shares the host's network)
        files=(("/etc/mysql/mariadb.conf.d/99-standin.cnf", "[mysqld]\nbind-address = 0.0.0.0\n"),),
    ),
    "redis": Recipe("redis", "redis-standin", "redis-server", "redis-entrypoint.sh", "redis-server",
                    env=(f"PATH={_BASE_PATH}",)),
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "race-harness" / "images"


def _has_image(client: Any, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_rootfs(recipe: Recipe, out: Path, log: Path) -> None:
    """A tarball of a minimal bookworm root with the recipe's package and entrypoint (needs root)."""
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed (apt-get install mmdebstrap); it builds the stand-in images")
    hooks = [f'upload {STANDIN / recipe.entrypoint} /usr/local/bin/docker-entrypoint.sh',
             'chmod 755 "$1/usr/local/bin/docker-entrypoint.sh"', *recipe.cleanup]
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        for i, (path, content) in enumerate(recipe.files):
            local = Path(tmp) / f"file{i}"
            local.write_text(content)
            hooks.append(f"upload {local} {path}")
        argv = ["mmdebstrap", "--variant=minbase", f"--include={recipe.package}", "--format=tar",
                *[f"--dpkgopt=path-exclude={p}" for p in _EXCLUDE],
                *[f"--customize-hook={h}" for h in hooks], "bookworm", str(out)]
        with open(log, "ab") as sink:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                  timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed building {recipe.tag} (exit {done.returncode}); see {log}")


def ensure_image(client: Any, service: str, *, build: bool = True) -> str | None:
    """The stand-in image's tag, present in the engine: already there, loaded from the cache, or built
    (and cached) when ``build``; None when it is not there and may not be built."""
    recipe = RECIPES[service]
    tag = recipe.tag
    if _has_image(client, tag):
        return tag
    cached = cache_dir() / f"{tag.split('/', 1)[1].replace(':', '-')}.tar"
    if cached.exists():
        with open(cached, "rb") as f:
            client.images.load(f)
        if _has_image(client, tag):
            return tag
    if not build:
        return None
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="standin-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        build_rootfs(recipe, rootfs, cache_dir() / f"{recipe.name}.build.log")
        repo, _, version = tag.partition(":")
        changes = ['ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]', f'CMD ["{recipe.cmd}"]',
                   *[f"ENV {e}" for e in recipe.env]]
        client.api.import_image_from_file(str(rootfs), repository=repo, tag=version, changes=changes)
        staging = Path(tmp) / "image.tar"
        with open(staging, "wb") as out:
            for chunk in client.images.get(tag).save(named=True):
                out.write(chunk)
        os.replace(staging, cached)
    for stale in cache_dir().glob(f"{recipe.name}-bookworm-*.tar"):  # earlier recipes' images
        if stale != cached:
            stale.unlink()
    return tag


def ensure_images(client: Any, *, build: bool = True) -> dict[str, str | None]:
    return {service: ensure_image(client, service, build=build) for service in RECIPES}
