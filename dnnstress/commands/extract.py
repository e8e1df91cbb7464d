"""``dnnstress extract``: images -> network layers -> a features file per layer."""

from __future__ import annotations

import argparse

from dnnstress.commands._common import (add_out_argument, add_quiet_argument,
                                        add_threads_argument, human_output, output_folder,
                                        show_progress)
from dnnstress.extract import ExtractionOptions, default_policy, extract_layers, layer_file_name
from dnnstress.models import (ALL_LAYERS, get_model, register, resolve_layers,
                              split_layer_names)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "extract", help="extract network layers' features of a data set into .npz files",
        description="Run a network over the train and test splits of a data set and write "
                    "the chosen layer's activations as a features file (cached: a second "
                    "run with the same settings does not extract again). Several layers "
                    "(--layer A,B or --layer all) come from one run of the network and "
                    "give one file per layer, features-LAYER.npz.")
    add_extraction_arguments(parser)
    add_out_argument(parser, what="the features file (features.npz; with several layers "
                                  "features-LAYER.npz each)")
    parser.set_defaults(func=run)
    return parser


def add_extraction_arguments(parser, dataset_default="fashion-mnist"):
    """The options that say what to extract and how."""
    parser.add_argument("--model", default=None,
                        help="registered network (see `dnnstress models`; default "
                             "efficientnet-lite0), 'vgg-m' with --vggm-mat, or an .onnx file")
    parser.add_argument("--layer", default=None, metavar="LAYER[,LAYER...]",
                        help="feature layer (default: the model's), several separated by "
                             f"commas, or '{ALL_LAYERS}' for every layer `dnnstress models` "
                             "lists (memory: every layer's finished features at the end, "
                             "4 bytes x images x its dims); for an .onnx file, tensor "
                             "names (see `dnnstress models --onnx FILE`)")
    parser.add_argument("--vggm-mat", metavar="FILE",
                        help="MatConvNet imagenet-vgg-m.mat: converted to ONNX as 'vgg-m', "
                             "layers L1..L21 as in the paper (L19 by default)")
    parser.add_argument("--mean", type=_triple, default=None, metavar="R,G,B",
                        help="for an .onnx file: per-channel mean on the 0..255 scale")
    parser.add_argument("--std", type=_triple, default=None, metavar="R,G,B",
                        help="for an .onnx file: per-channel std on the 0..255 scale")
    parser.add_argument("--dataset", default=dataset_default,
                        help="data set name (see `dnnstress data list`; default "
                             f"{dataset_default})")
    parser.add_argument("--root", default=None, help="folder holding the data set")
    parser.add_argument("--train-size", type=int, default=None,
                        help="stratified subset of the training split (default: all)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="stratified subset of the test split (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-threads", type=int, default=None, metavar="N",
                        help="threads decoding images (default: one per core with --device "
                             "cuda, one on the CPU, where the network uses every core)")
    parser.add_argument("--policy", choices=("resize_crop", "resize"), default=None,
                        help="resize the shorter side and centre-crop (the network's "
                             "standard), or resize the whole image (default for small "
                             "images such as Fashion-MNIST)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip and count undecodable images instead of stopping")
    parser.add_argument("--no-cache", action="store_true", help="extract even if cached")
    add_threads_argument(parser, onnxruntime=True)
    add_quiet_argument(parser)


def resolve_model(args):
    """The ModelSpec the options name: registered, converted from VGG-M, or an ONNX file."""
    if args.vggm_mat:
        from dnnstress.models.vggm import vggm_spec
        return register(vggm_spec(args.vggm_mat), replace=True)
    if args.model and args.model.endswith(".onnx"):
        from dnnstress.models.onnx_layers import onnx_file_spec
        listing = f"list them with `dnnstress models --onnx {args.model}`"
        if not args.layer:
            raise ValueError(f"--layer TENSOR[,TENSOR...] is needed with an .onnx file "
                             f"({listing})")
        if args.layer.strip() == ALL_LAYERS:
            raise ValueError(f"--layer {ALL_LAYERS} is for a registered model's listed "
                             f"layers; an .onnx file has no list: name its tensors ({listing})")
        return register(onnx_file_spec(args.model, split_layer_names(args.layer),
                                       mean=args.mean, std=args.std), replace=True)
    return get_model(args.model) if args.model else get_model()


def options_from(args, model) -> ExtractionOptions:
    policy = args.policy or default_policy(args.dataset, model)
    return ExtractionOptions(batch_size=args.batch_size, policy=policy, device=args.device,
                             skip_corrupt=args.skip_corrupt, progress=show_progress(args),
                             threads=args.threads, decode_threads=args.decode_threads)


def run(args) -> int:
    out = output_folder(args.out)
    model = resolve_model(args)
    layers = [layer.name for layer in resolve_layers(model, args.layer)]
    files = ({layers[0]: "features.npz"} if len(layers) == 1 else
             {layer: layer_file_name(layer) for layer in layers})
    if len(set(files.values())) < len(files):
        raise ValueError(f"layers {', '.join(layers)} do not all have file names of their "
                         f"own ({', '.join(files.values())}); extract them separately")
    sets = extract_layers(model, layers, args.dataset, args.root,
                          train_size=args.train_size, test_size=args.test_size,
                          seed=args.seed, options=options_from(args, model),
                          use_cache=not args.no_cache)
    with human_output(args):
        for layer, features in sets.items():
            path = features.save(out / files[layer])
            print(f"wrote {path}: {features.train_x.shape[0]} train + "
                  f"{features.test_x.shape[0]} test vectors of {features.n_features} dims "
                  f"({features.metadata['model']}, layer {layer})")
    return 0


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}")
    return values
