"""Vendor record -> FHIR dict -> orjson bytes, against the same records built as
fhir.resources R4B models and serialised by the models' own ``json()``.

    .venv/bin/python bench/bench_mappings.py [--records 100000] [--runs 5]
        [--model-records 10000]

Single process, single thread (one core). Each run times the whole batch; the figure is
the median over runs. The model path is timed on the first ``--model-records`` of the
same records in each run (it is ~40x slower; 100,000 of them take minutes per kind),
and rates are per record, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import orjson
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.patient import Patient

sys.path.insert(0, str(Path(__file__).parent))
import records

from mappings import LeyrContext, NyraContext, leyr, nyra

LEYR = LeyrContext("leyr-webdoc", "Europe/Stockholm")
NYRA = NyraContext("nyra-city", "Asia/Kolkata")
KINDS = [
    ("leyr patient", records.leyr_patients, leyr.to_fhir_patient, LEYR, Patient),
    ("leyr appointment", records.leyr_appointments, leyr.to_fhir_appointment, LEYR, Appointment),
    ("nyra patient", records.nyra_patients, nyra.to_fhir_patient, NYRA, Patient),
    ("nyra appointment", records.nyra_appointments, nyra.to_fhir_appointment, NYRA, Appointment),
]


def dict_path(batch, to_fhir, ctx) -> float:
    dumps = orjson.dumps
    t0 = time.perf_counter()
    for record in batch:
        dumps(to_fhir(record, ctx))
    return time.perf_counter() - t0


def model_path(batch, to_fhir, ctx, model) -> float:
    t0 = time.perf_counter()
    for record in batch:
        model.model_validate(to_fhir(record, ctx)).json()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model-records", type=int, default=10_000)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {args.records} records, {args.runs} runs, "
        f"model path on {args.model_records} of them"
    )
    print(f"{'kind':18} {'dict+orjson rec/s':>18} {'R4B model rec/s':>16} {'ratio':>7}")
    for name, make, to_fhir, ctx, model in KINDS:
        batch = make(args.records)
        sample = batch[: args.model_records]
        fast, slow, ratios = [], [], []
        for _ in range(args.runs):
            gc.collect()
            f = len(batch) / dict_path(batch, to_fhir, ctx)
            gc.collect()
            s = len(sample) / model_path(sample, to_fhir, ctx, model)
            fast.append(f)
            slow.append(s)
            ratios.append(f / s)
        print(
            f"{name:18} {statistics.median(fast):18,.0f} {statistics.median(slow):16,.0f} "
            f"{statistics.median(ratios):6.1f}x"
        )


if __name__ == "__main__":
    main()
