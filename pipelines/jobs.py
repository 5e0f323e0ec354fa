"""Jobs: the dataset job (per dataset partition) and the model/evaluation job (per dataset x experiment partition)."""

import dagster as dg

from assets.data_assets import preprocessed_dataset, raw_dataset
from assets.evaluation_assets import evaluation_report, parzen_bandwidth, parzen_log_likelihood, reproduction_scores
from assets.inference_assets import latent_encoder
from assets.metrics_assets import evaluation_metrics, feature_classifier, paper_figures
from assets.model_assets import gan_model, generated_samples
from assets.serving_assets import best_generator, exported_generator, generator_candidate
from pipelines.executors import celery_redis_executor

dataset_job = dg.define_asset_job(
    "dataset_job",
    selection=dg.AssetSelection.assets(raw_dataset, preprocessed_dataset, feature_classifier),
    description="Download and preprocess one dataset partition and train its feature classifier (with checks).",
)

TRAINING_SELECTION = dg.AssetSelection.assets(
    gan_model,
    generated_samples,
    parzen_bandwidth,
    parzen_log_likelihood,
    reproduction_scores,
    evaluation_metrics,
    paper_figures,
    exported_generator,
)

training_job = dg.define_asset_job(
    "training_job",
    selection=TRAINING_SELECTION,
    description="Train, sample, Parzen-evaluate, score, draw figures and export the generator for one dataset x "
    "experiment partition.",
)

celery_training_job = dg.define_asset_job(
    "celery_training_job",
    selection=TRAINING_SELECTION,
    executor_def=celery_redis_executor,
    description="training_job with each step a Celery task on any worker (pipelines/celery_workers.py).",
)

inference_job = dg.define_asset_job(
    "inference_job",
    selection=dg.AssetSelection.assets(latent_encoder),
    description="Fit the learned inverse E(x) -> z of one dataset x experiment partition's trained generators (a "
    "BiGAN's own is scored instead) and probe it; the report shows it beside the metrics. Under the daemon it follows "
    "training by declarative automation.",
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(gan_model),
    description="Train one dataset x experiment partition; samples, Parzen and the report follow by automation.",
)

promotion_job = dg.define_asset_job(
    "promotion_job",
    selection=dg.AssetSelection.assets(generator_candidate, best_generator),
    description="Pick one dataset's best generator and promote it unless it is worse than the one in use.",
)

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets(evaluation_report),
    description="Rebuild the evaluation report from every stored result.",
)
