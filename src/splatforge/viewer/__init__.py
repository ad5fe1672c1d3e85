"""The web viewer: a local page that renders a splat with Spark (three.js) plus the run's camera path.

`viewer_static_dir()` is the page folder (its npm packages in node_modules/, installed by ./setup.sh);
`camera_path_json(run_or_splat)` is the page's cameras.json. The job service mounts both. The page opens
every format `splatforge export` writes (.ply, .compressed.ply, .splat, .spz, .sog).
"""

from splatforge.viewer.camera_path import camera_path_json, resolve_input
from splatforge.viewer.server import check_viewer_assets, make_server, server_url, viewer_static_dir

__all__ = ["camera_path_json", "resolve_input", "check_viewer_assets", "make_server", "server_url",
           "viewer_static_dir"]
