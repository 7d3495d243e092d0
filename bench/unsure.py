"""`python -m bench unsure`: the artefacts against Keras on photos the model is unsure of.

The mixed-precision analysis chooses its float32 layers on training photos, where the model is
sure (P(dog) near 0 or 1) and a logit error barely moves the probability; parity's tolerance is
on the probability. This measures what a user's photos would see: every photo with neither cat
nor dog in ../shared/data/not-pets (the cat/dog head is unsure of many) and 300 of the Kaggle
test photos (no run trains on them), through each artefact of one or more ART_DIRs (`--art`, then
`--compare ART_DIR ...`, measured side by side in one run).

Per artefact: max |Δp| and |Δpet| over every photo; the largest change of the P(dog) logit on
the photos the model is unsure of (0.1 < P < 0.9 under Keras), and the bound it sets on |Δp| for
a photo at P = 0.5 (a quarter of it); the same for P(pet); top-1 (cat or dog) and verdict (cat,
dog or neither) agreement, int8 included. Outside that band the logit says little: Core ML's fp16
package writes its outputs in float16, whose step (4.9e-4 below 1) is a large share of a P(cat)
of 0.01 and moves the logit, though not the probability, by up to 0.05.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEST_PHOTOS = 300
UNSURE = (0.1, 0.9)  # P(dog) under Keras


def photos(shared: Path, size: int) -> np.ndarray:
    from catdog.data import scan
    from catdog.export import draw_photos

    not_pets = scan(shared / "data" / "not-pets")[0]
    test = scan(shared / "data" / "dogs-vs-cats" / "test")[0]
    return np.concatenate([draw_photos(not_pets, size, len(not_pets), seed=3)[0], draw_photos(test, size, TEST_PHOTOS, seed=3)[0]])


def cmd_unsure(args) -> None:
    from bench.__main__ import SHARED, save, table
    from catdog.contract import PET, PET_THRESHOLD, PROBABILITIES, load_manifest, verdict
    from catdog.export.sensitivity import logit
    from catdog.runtime import open_model

    art_dirs = [Path(args.art), *(Path(a) for a in args.compare or [])]
    rows, keras, images = [], {}, None
    for art in art_dirs:
        manifest = load_manifest(art)
        temperature = float(manifest.get("temperature", 1.0))
        for entry in manifest["artefacts"]:
            model = open_model(art / entry["file"])
            if images is None:
                images = photos(SHARED, model.image_size)
            if temperature not in keras:
                keras[temperature] = open_model(args.run, temperature=temperature).run(images)
            ref, out = keras[temperature], model.run(images)
            p_ref = ref[PROBABILITIES][:, 1]
            unsure = (p_ref > UNSURE[0]) & (p_ref < UNSURE[1])
            dlogit = np.abs(logit(out[PROBABILITIES][:, 1]) - logit(p_ref))[unsure]
            pet_ref = ref[PET][:, 0]
            pet_unsure = (pet_ref > UNSURE[0]) & (pet_ref < UNSURE[1])
            dpet_logit = np.abs(logit(out[PET][:, 0]) - logit(pet_ref))[pet_unsure]
            threshold = float(manifest.get(PET_THRESHOLD, 0.0))
            answers = [verdict(pr, pe, threshold) for pr, pe in zip(out[PROBABILITIES], out[PET][:, 0])]
            answers_ref = [verdict(pr, pe, threshold) for pr, pe in zip(ref[PROBABILITIES], ref[PET][:, 0])]
            rows.append({
                "art_dir": str(art), "artefact": entry["file"], "kept_float32": len(entry.get("kept_float32", [])),
                "mb": entry["bytes"] / 1e6, "photos": int(len(images)), "unsure_photos": int(unsure.sum()),
                "prob_max_abs": float(np.abs(out[PROBABILITIES][:, 1] - p_ref).max()),
                "pet_max_abs": float(np.abs(out[PET] - ref[PET]).max()),
                "logit_max_abs_unsure": float(dlogit.max()),
                "prob_bound": float(dlogit.max() / 4),
                "pet_unsure_photos": int(pet_unsure.sum()),
                "pet_logit_max_abs_unsure": float(dpet_logit.max()) if pet_unsure.any() else None,
                "pet_bound": float(dpet_logit.max() / 4) if pet_unsure.any() else None,
                "top1_agreement": float(np.mean((out[PROBABILITIES][:, 1] > 0.5) == (p_ref > 0.5))),
                "verdict_agreement": float(np.mean([a == b for a, b in zip(answers, answers_ref)])),
            })
    print(f"{rows[0]['photos']} photos ({rows[0]['unsure_photos']} with {UNSURE[0]} < P(dog) < {UNSURE[1]}, {rows[0]['pet_unsure_photos']} with "
          f"{UNSURE[0]} < P(pet) < {UNSURE[1]} under Keras); tolerance fp16 5e-3, fp32 1e-4")
    table(rows, [("artefact", "artefact", "<46"), ("kept_float32", "fp32 layers", "d"), ("mb", "MB", ".2f"), ("prob_max_abs", "max |Δp|", ".2e"),
                 ("pet_max_abs", "max |Δpet|", ".2e"), ("logit_max_abs_unsure", "max |Δlogit| unsure", ".4f"), ("prob_bound", "|Δp| at P 0.5", ".2e"),
                 ("pet_logit_max_abs_unsure", "pet |Δlogit| unsure", ".4f"), ("pet_bound", "|Δpet| at P 0.5", ".2e"),
                 ("top1_agreement", "top-1 agree", ".4f"), ("verdict_agreement", "verdict agree", ".4f")])
    save("unsure", rows, {"run": str(args.run), "art_dirs": [str(a) for a in art_dirs], "photos": "every not-pets photo + 300 Kaggle test photos (seed 3)",
                            "unsure": f"{UNSURE[0]} < P(dog) < {UNSURE[1]} under Keras"})
