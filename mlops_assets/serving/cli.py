"""`mlops-serve`: the HTTP service on uvicorn, over the data directory of MLOPS_DATA_DIR."""

from __future__ import annotations

import argparse
import os

from mlops_assets.settings import load_settings


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mlops-serve",
        description="Serve features, segments, CLV and forecasts from the model registry's champion.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", default=None, help="default: MLOPS_DATA_DIR, else data/")
    p.add_argument("--mode", choices=["champion", "shadow", "canary"], help="default: serving.mode")
    p.add_argument("--canary-share", type=float, help="share of requests the challenger answers (canary)")
    p.add_argument("--poll-seconds", type=float, help="how often the registry is checked for a new champion")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from mlops_assets.serving.app import create_app

    args = parse(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in a server's log
    if args.data_dir:
        os.environ["MLOPS_DATA_DIR"] = os.path.abspath(args.data_dir)
    settings = load_settings(args.data_dir)
    overrides = {
        k: v
        for k, v in {
            "mode": args.mode,
            "canary_share": args.canary_share,
            "poll_seconds": args.poll_seconds,
        }.items()
        if v is not None
    }
    config = settings.serving.model_copy(update=overrides)
    config = type(config).model_validate(config.model_dump())  # the overrides validated like the file
    app = create_app(settings.data_dir, config)
    # one process: the state (models, answers) lives in it; the prediction log is the access log
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
