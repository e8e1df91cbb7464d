"""Build the embedded EfficientNet-Lite0 ONNX file at a given path.

The library builds it into its cache on first use (``get_model("efficientnet-lite0")
.onnx_path()``); this script is for inspecting the graph (e.g. in Netron) or shipping the
file elsewhere::

    python models/build_efficientnet_lite0.py efficientnet-lite0.onnx
"""

import argparse

from dnnstress.models.efficientnet_lite import build_efficientnet_lite0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="path of the .onnx file to write")
    parser.add_argument("--weights", default=None,
                        help="legacy .pth weight file (default: the packaged one)")
    args = parser.parse_args(argv)
    path = build_efficientnet_lite0(args.output, weights=args.weights)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
