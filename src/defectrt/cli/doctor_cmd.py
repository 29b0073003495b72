"""`defectrt doctor [--json OUT]`: what this machine has and what will work (library: defectrt.bench.doctor)."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser("doctor", help="what this machine has (TensorRT, CUDA, GPU, JetPack, plugins) and what will work",
                       description="Probes this machine without changing anything and says which defectrt paths "
                       "will work here, and what to do for the others.")
    p.add_argument("--json", metavar="OUT", help="also write the findings as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def run(args):
    import json

    from defectrt.bench.doctor import collect, format_doctor, will_work
    from defectrt.fileio import atomic_path, check_output

    if args.json:
        check_output(args.json, args.force)
    facts = collect()
    checks = will_work(facts)
    print(format_doctor(facts, checks))
    if args.json:
        with atomic_path(args.json, force=True) as tmp:
            with open(tmp, "w") as f:
                json.dump({"facts": facts, "will_work": [{"what": w, "ok": ok, "why": why} for w, ok, why in checks]},
                          f, indent=2)
                f.write("\n")
        print("report: " + args.json)
    return 0
