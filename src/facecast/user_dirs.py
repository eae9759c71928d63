"""Where facecast keeps per-user files on each OS (a contract: the app and the bridges share it).

===========  ===============================================  ==========================================
OS           settings (`config --init`, VTube Studio token)   when $XDG_CONFIG_HOME is set (any OS)
===========  ===============================================  ==========================================
Linux        ~/.config/facecast                               $XDG_CONFIG_HOME/facecast
Windows      %APPDATA%\\facecast                               $XDG_CONFIG_HOME/facecast
macOS        ~/Library/Application Support/facecast          $XDG_CONFIG_HOME/facecast
===========  ===============================================  ==========================================

===========  ===============================================  ==========================================
OS           cache (analysed portraits), safe to delete       when $XDG_CACHE_HOME is set (any OS)
===========  ===============================================  ==========================================
Linux        ~/.cache/facecast                                $XDG_CACHE_HOME/facecast
Windows      %LOCALAPPDATA%\\facecast\\Cache                    $XDG_CACHE_HOME/facecast
macOS        ~/Library/Caches/facecast                        $XDG_CACHE_HOME/facecast
===========  ===============================================  ==========================================
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def user_config_dir(platform: str = sys.platform, environ: Mapping[str, str] = os.environ,
                    home: Path | None = None) -> Path:
    """facecast's per-user settings folder: $XDG_CONFIG_HOME/facecast when set (an absolute path), else the
    OS's usual place (the table above)."""
    home = home if home is not None else Path.home()
    xdg = environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    elif platform == "win32":
        base = Path(environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = home / ".config"
    return base / "facecast"


def user_cache_dir(platform: str = sys.platform, environ: Mapping[str, str] = os.environ,
                   home: Path | None = None) -> Path:
    """facecast's per-user cache folder (what can be rebuilt): $XDG_CACHE_HOME/facecast when set (an absolute
    path), else the OS's usual place (the second table above)."""
    home = home if home is not None else Path.home()
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "facecast"
    if platform == "win32":
        return Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "facecast" / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / "facecast"
    return home / ".cache" / "facecast"
