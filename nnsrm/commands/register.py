"""Bring your own activations: register a folder of them under a results root, as a condition.

    nnsrm register --source my_acts --data digits --model sklearn_mlp --root results
    nnsrm analyse  --data digits --model sklearn_mlp --root results      # stage 3, unchanged
    nnsrm figures  --data digits --model sklearn_mlp --root results

Checks the folder (format: docs/bring-your-own.md: per network one folder or
one .npz/HDF5 file, per checkpoint and layer an images × units array, one
labels file) and writes ROOT/<data>/<model>/manifest.json, which lists every
array with its file, key, shape, dtype, size and modification time. Nothing is
copied: stage 3 reads the files where they are, memory-mapped, and refuses a
file that changed since registration until it is registered again. Bad input
is one line naming the file and the fix (exit status 2), and then nothing
under ROOT is written.
"""

from __future__ import annotations

from pathlib import Path

from nnsrm import cli, console

PROG = "nnsrm register"


def build_parser():
    parser = cli.OneLineArgumentParser(prog=cli.program_name(PROG), description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True,
                        help="folder of activations in the documented format (docs/bring-your-own.md)")
    parser.add_argument("--data", required=True, help="name of the condition's data set (a folder name)")
    parser.add_argument("--model", required=True, help="name of the condition's networks (a folder name)")
    parser.add_argument("--root", type=Path, default=Path("results"),
                        help="results root; the manifest goes to ROOT/<data>/<model>/manifest.json "
                             "(default: %(default)s)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="labels file (.npy, or .txt with one integer per line) if it is not "
                             "SOURCE/labels.npy, labels.txt or test_labels.npy")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a manifest that registers other activations (their analyses become "
                             "stale: rerun nnsrm analyse with --overwrite)")
    parser.add_argument("--skip-finite-check", action="store_true",
                        help="do not read every array for NaN/Inf now (stage 3 still checks what it analyses)")
    cli.add_verbosity_args(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose, prog=cli.program_name(PROG))
    root = cli.check_root(args.root)

    from nnsrm.manifest import register_source

    reg = register_source(args.source, root, args.data, args.model, labels=args.labels, overwrite=args.overwrite,
                          check_finite=not args.skip_finite_check)
    console.start_log_file(root, "register")
    for line in reg.lines():
        print(line)
    where = f"--data {args.data} --model {args.model} --root {root}"
    print(f"next: nnsrm analyse {where}, then nnsrm figures {where}")
    return 0
