"""Ranking quality of the matchmaking engine on a labelled life-sciences set.

48 competence profiles (12 specific topics × 4, written with varied wording:
some share the query's words, some only its meaning) and 18 opportunities used
as queries. Relevance is graded: 2 = same specific topic, 1 = same broad theme
(e.g. another oncology topic), 0 = otherwise. Metrics over the top 10:

- recall@10: share of the grade-2 profiles found in the top 10;
- nDCG@10: graded gains (2^g − 1), log2 discount, ideal ordering from the labels.

The three variants run on the same index with the real embedding model:
hybrid (the service's default weight), BM25 only (weight 1) and embeddings
only (weight 0).

    uv run python bench/matchmaking/quality.py
"""

from __future__ import annotations

import math
import time

from matchmaking.search.document import Document, Filter
from matchmaking.search.embeddings import shared_encoder
from matchmaking.search.engine import Engine

THEMES = {
    "car_t": "oncology",
    "liquid_biopsy": "oncology",
    "pathology_ai": "oncology",
    "rare_gene": "rare",
    "rare_registry": "rare",
    "breast_imaging": "devices",
    "rehab_robotics": "devices",
    "infectious_pcr": "diagnostics",
    "point_of_care": "diagnostics",
    "polyphenols": "nutra",
    "microbiome": "nutra",
    "pharmacogenomics": "permed",
}

PROFILES: list[tuple[str, str]] = [
    ("car_t", "Engineering of CAR-T cells against B-cell lymphoma; GMP cell factory for autologous products."),
    ("car_t", "Adoptive immunotherapy laboratory: genetically redirected lymphocytes for leukaemia patients."),
    ("car_t", "Closed bioreactors and automation for manufacturing living cell medicines at clinical scale."),
    ("car_t", "TCR-engineered T cells and tumour immunology; preclinical models of cellular cancer therapy."),
    ("liquid_biopsy", "Circulating tumour DNA sequencing for monitoring minimal residual disease in cancer."),
    ("liquid_biopsy", "Liquid biopsy assays: ctDNA, exosomes and circulating tumour cells from blood samples."),
    ("liquid_biopsy", "Blood-based genomic tests that detect resistance mutations during targeted cancer therapy."),
    ("liquid_biopsy", "Next-generation sequencing panels for companion diagnostics and patient stratification."),
    ("pathology_ai", "Deep learning on whole-slide histology images for tumour grading and biomarker scoring."),
    ("pathology_ai", "Digital pathology platform: slide scanners, image management and AI-assisted diagnosis."),
    ("pathology_ai", "Computer vision group analysing microscopy of tissue sections to classify carcinomas."),
    ("pathology_ai", "Machine learning for cancer histopathology, segmentation of nuclei and tissue regions."),
    ("rare_gene", "AAV gene therapy vectors for inherited retinal dystrophies and other rare genetic diseases."),
    ("rare_gene", "Gene replacement and editing strategies for orphan neuromuscular disorders."),
    ("rare_gene", "Viral vector design and production for treating monogenic rare conditions in children."),
    ("rare_gene", "Antisense oligonucleotides and RNA therapeutics for ultra-rare inherited diseases."),
    ("rare_registry", "Patient registries and natural history studies of rare neuromuscular diseases."),
    ("rare_registry", "Clinical network for rare disease diagnosis, cohort follow-up and real-world evidence."),
    ("rare_registry", "Epidemiology of orphan diseases; longitudinal data collection on small patient populations."),
    ("rare_registry", "Reference centre for rare metabolic disorders running observational cohort studies."),
    ("breast_imaging", "Microwave imaging systems and antennas for breast cancer screening."),
    ("breast_imaging", "Radiology department validating new mammography and tomosynthesis techniques."),
    ("breast_imaging", "Non-ionising imaging of breast tissue with radar-based sensors and reconstruction."),
    ("breast_imaging", "Early detection of breast tumours: screening programmes and imaging clinical trials."),
    ("rehab_robotics", "Wearable exoskeletons and robotic devices for stroke rehabilitation."),
    ("rehab_robotics", "Biorobotics institute: assistive robots, prostheses and motor recovery after injury."),
    ("rehab_robotics", "Inertial motion sensors and gait analysis for physiotherapy and neurorehabilitation."),
    ("rehab_robotics", "Soft robotic gloves helping patients regain hand function."),
    ("infectious_pcr", "Real-time PCR kits for respiratory viruses and bacterial infections."),
    ("infectious_pcr", "Molecular microbiology: nucleic acid amplification tests for sexually transmitted infections."),
    ("infectious_pcr", "Multiplex qPCR panels detecting antimicrobial resistance genes in hospital pathogens."),
    ("infectious_pcr", "Virology laboratory developing molecular assays for emerging infectious diseases."),
    ("point_of_care", "Microfluidic lab-on-chip devices for rapid diagnostics at the patient's bedside."),
    ("point_of_care", "Point-of-care testing: lateral flow immunoassays read by a smartphone."),
    ("point_of_care", "Portable biosensors for decentralised testing in general practice and pharmacies."),
    ("point_of_care", "Paper-based diagnostics and low-cost readers for near-patient testing."),
    ("polyphenols", "Extraction and standardisation of olive leaf polyphenols for food supplements."),
    ("polyphenols", "Natural antioxidants from grape pomace for nutraceutical and cosmetic products."),
    ("polyphenols", "Botanical extracts rich in flavonoids; stability and bioavailability studies."),
    ("polyphenols", "Green chemistry recovery of bioactive phenolic compounds from agri-food by-products."),
    ("microbiome", "Probiotic strains and gut microbiota modulation for metabolic health."),
    ("microbiome", "Metagenomic sequencing of the intestinal microbiome in inflammatory bowel disease."),
    ("microbiome", "Postbiotics and fermented ingredients supporting the gut barrier."),
    ("microbiome", "Skin microbiome research for dermocosmetic formulations."),
    ("pharmacogenomics", "Pharmacogenetic testing to tailor drug dosing to a patient's genotype."),
    ("pharmacogenomics", "Personalised medicine programme integrating genomic data into clinical decisions."),
    ("pharmacogenomics", "Genetic variants affecting drug metabolism; CYP450 genotyping services."),
    ("pharmacogenomics", "Precision prescribing software combining genomics and electronic health records."),
]

QUERIES: list[tuple[str, str]] = [
    ("car_t", "Technology request: scalable closed process to manufacture CAR-T cells for clinical trials."),
    ("car_t", "R&D partner for engineered T lymphocyte therapies against blood cancers."),
    ("liquid_biopsy", "Looking for a blood test that tracks tumour mutations during therapy (ctDNA)."),
    ("liquid_biopsy", "Companion diagnostic on liquid biopsy to select patients for a targeted drug trial."),
    ("pathology_ai", "Software wanted to automate the reading of histology slides with artificial intelligence."),
    ("rare_gene", "Partner for developing a gene therapy for a rare inherited eye disease."),
    ("rare_registry", "Natural history data and patient registry for an orphan neuromuscular disorder."),
    ("rare_registry", "Clinical centres following cohorts of patients with rare diseases for an observational study."),
    ("breast_imaging", "Clinical validation of a microwave device for breast cancer screening."),
    ("breast_imaging", "Safer alternative to X-ray mammography: partners for imaging trials."),
    ("rehab_robotics", "Robotic exoskeleton for walking rehabilitation after stroke needs clinical partner."),
    ("infectious_pcr", "Molecular test for antibiotic resistance genes in hospital-acquired infections."),
    ("point_of_care", "Rapid test device usable by pharmacists without a laboratory."),
    ("point_of_care", "Lab-on-a-chip cartridge for bedside blood analysis seeks manufacturing partner."),
    ("polyphenols", "Supplier of standardised olive polyphenol extracts for a supplement line."),
    ("microbiome", "Probiotic formulation to support gut health: research partner wanted."),
    ("pharmacogenomics", "Implementing genotype-guided prescribing in regional hospitals (personalised medicine)."),
    ("pharmacogenomics", "Decision support tool linking pharmacogenetic results to e-prescriptions."),
]


def grade(query_topic: str, profile_topic: str) -> int:
    """2 same topic, 1 same broad theme, 0 otherwise."""
    if query_topic == profile_topic:
        return 2
    return 1 if THEMES[query_topic] == THEMES[profile_topic] else 0


def ndcg_at_10(ranked_grades: list[int], all_grades: list[int]) -> float:
    """Normalised discounted cumulative gain over the top 10."""

    def dcg(grades: list[int]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades[:10]))

    ideal = dcg(sorted(all_grades, reverse=True))
    return dcg(ranked_grades) / ideal if ideal else 0.0


def main() -> None:
    """Build the index, run every query in the three variants, print the figures side by side."""
    encoder = shared_encoder(2)
    started = time.perf_counter()
    vectors = encoder.encode([t for _, t in PROFILES] + [t for _, t in QUERIES])
    encode_s = time.perf_counter() - started
    engine = Engine()
    for i, (_topic, text) in enumerate(PROFILES):
        engine.upsert(
            Document(
                key=f"profile:p{i}",
                kind="profile",
                entity_id=f"p{i}",
                fields={"description": text},
                vector=vectors[i],
            )
        )
    engine.index.merge()
    variants = {
        "hybrid": engine.bm25_weight,
        "bm25 only": 1.0,
        "embeddings only": 0.0,
        "hybrid, sweep": 0.3,
        "hybrid, sweep ": 0.15,
    }
    results: dict[str, tuple[float, float]] = {}
    for name, weight in variants.items():
        recalls, ndcgs = [], []
        for q, (topic, text) in enumerate(QUERIES):
            query = Document(
                key=f"opportunity:q{q}",
                kind="opportunity",
                entity_id=f"q{q}",
                fields={"title": text},
                vector=vectors[len(PROFILES) + q],
            )
            hits = engine.rank(query, Filter(kind="profile"), limit=10, bm25_weight=weight, explain=False).hits
            ranked = [grade(topic, PROFILES[int(h.entity_id[1:])][0]) for h in hits]
            all_grades = [grade(topic, t) for t, _ in PROFILES]
            recalls.append(sum(1 for g in ranked if g == 2) / all_grades.count(2))
            ndcgs.append(ndcg_at_10(ranked, all_grades))
        results[name] = (sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs))
    print(f"matchmaking ranking quality: {len(PROFILES)} profiles, {len(QUERIES)} labelled queries (graded 0/1/2)")
    print(f"embedding {len(PROFILES) + len(QUERIES)} texts took {encode_s:.2f} s")
    print(f"{'variant':<36}{'recall@10':>11}{'nDCG@10':>10}")
    for name, (recall, ndcg) in results.items():
        label = f"{name.strip()} (bm25 weight {variants[name]:.2f})"
        print(f"{label:<36}{recall:>11.3f}{ndcg:>10.3f}")


if __name__ == "__main__":
    main()
