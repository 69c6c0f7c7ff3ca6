/**
 * probsem's library entry point: the modelling core. The HTTP server is `probsem/server` and the
 * figure renderer `probsem/plot`, so importing this stays light.
 */
export {
  createModel,
  train,
  saveModel,
  loadRun,
  evaluate,
  Run,
  type ModelTypes,
  type ModelName,
  type CreateModelOptions,
  type TrainOptions,
  type TrainedModel,
  type ImageInput,
  type Embedding,
  type Annotation,
  type Hit,
  type Generated,
} from './api.js';
export { initBackend, currentBackend } from './core/backend.js';
export { ProbsemError, DataFormatError } from './core/errors.js';
export { Rng, deriveSeed } from './core/random.js';
export * from './core/linalg.js';
export * from './distributions/index.js';
export * from './data/dataset.js';
export { loadDataset, loadIdxDirectory, DATASET_NAMES } from './data/registry.js';
export { readIdxFile, parseIdx, writeIdxFile, encodeIdx } from './data/idx.js';
export { encodeGridPng, type GridOptions } from './data/png.js';
export { decodeImage, describeConversion, sniffImageFormat, type DecodeImageOptions, type DecodedImage, type ImageConversion, type ImageFormat } from './data/image-decode.js';
export { detectPolarity, type Polarity, type PolarityGuess } from './data/polarity.js';
export { type Batch, type ImageModel, type Trainable, type LossResult, lossOf } from './models/base.js';
export type { Ops, Objective, CustomOp, HostContext } from './ops/types.js';
export { TfOps, plainTfOps } from './ops/tfjs.js';
export { TapeOps, Tape } from './ops/tape.js';
export { diagFromMoments, fullFromMoments, sampleTerm, klTerm, meanKl, registerKlTerm, productOfExperts, classTargets, categoricalNllTerm } from './distributions/objective.js';
export { modelNames, registerModel, trainableModelNames, type ModelEntry, type ModelKind } from './models/registry.js';
export { Poe, PoeConfigSchema } from './models/poe.js';
export { Mopoe, MopoeConfigSchema } from './models/mopoe.js';
export { Mmvae, MmvaeConfigSchema } from './models/mmvae.js';
export { Vae, VaeConfigSchema } from './models/vae.js';
export { Pse, PseConfigSchema } from './models/pse.js';
export { PseStar, PseStarConfigSchema } from './models/pse-star.js';
export { BetaVae, BetaVaeConfigSchema } from './models/beta-vae.js';
export { Cvae, CvaeConfigSchema } from './models/cvae.js';
export { Jmvae, JmvaeConfigSchema, JointVae, JointVaeConfigSchema } from './models/jmvae.js';
export { Trelbo, TrelboConfigSchema } from './models/trelbo.js';
export { Scan, ScanConfigSchema, prepareScanRun } from './models/scan.js';
export { Informed, InformedConfigSchema, prepareInformedRun } from './models/informed.js';
export { Autoencoder, AutoencoderConfigSchema, POINT_MASS_LOG_VAR } from './models/autoencoder.js';
export { DenoisingAe, DenoisingAeConfigSchema, corruptImages, corruptRows } from './models/denoising-ae.js';
export { SparseAe, SparseAeConfigSchema, sparsityPenalty } from './models/sparse-ae.js';
export { BimodalAe, BimodalAeConfigSchema, prepareBimodalRun } from './models/bimodal-ae.js';
export { parsePairedSpec, makePairedDataset, type PairedOptions } from './data/paired.js';
export { DISTANCES, DISTANCE_INFO, type Distance, type DistanceInfo } from './index/distances.js';
export { embedSplit, type EmbedFormat, type EmbedOptions, type EmbedResult } from './runs/embed.js';
export { NpyWriter, readNpy, type NpyDtype } from './data/npy.js';
export { KlIndex, bruteForceKl, bruteForceScores, type ItemGaussians, type QueryGaussian as KlQuery, type SearchHit, type SearchOptions } from './index/kl-index.js';
export { ClickHouseStore, parseClickHouseUrl } from './index/clickhouse.js';
export { Classifier } from './models/classifier.js';
export { loadModel, readModelMeta, type ModelFile, type ModelProvenance } from './models/persist.js';
export { type EngineChoice, type TrainProgress, type TrainResult } from './train/trainer.js';
export * from './eval/metrics.js';
export * from './eval/tag-ranking.js';
export { getJudge } from './eval/judge.js';
export * from './runs/runs.js';
export * from './runs/retrieval.js';
export { searchIndex, searchIndexPath, buildSearchIndex, clearSearchIndexMemory, lastIndexSource, type SearchIndexOptions, type IndexSource, type SplitName } from './runs/search-index.js';
export { benchPaper, type BenchPaperOptions, type BenchPaperResult, type BenchSummary, PAPER_TABLES } from './runs/bench-paper.js';
export { WordVectors, UnknownWordError, cosine, type OovPolicy, type Neighbour } from './text/word-vectors.js';
export { readWordVectors, writeWordVectors } from './text/readers.js';
export { loadWordNetVectors, buildWordNetVectors } from './text/wordnet.js';
export { wordNetHierarchy, datasetHierarchy, type ClassHierarchy } from './text/ontology.js';
export * from './text/labels.js';
export { phraseInputs, phraseGaussians, phraseNeighbours, generateForPhrases, queryForWords, runWordVectors } from './runs/words.js';
export { welchTTest } from './eval/stats.js';
export * from './analysis/projection.js';
export * from './analysis/train-log.js';
export * from './analysis/figures.js';
export { tsne, exactNeighbours, knnAccuracy, trustworthiness, type TsneOptions, type TsneResult } from './analysis/tsne.js';
export { kmeans, normalizedMutualInformation, purity, type KMeansOptions, type KMeansResult } from './analysis/clustering.js';
export { fitCca, projectX, projectY, totalCorrelation, sharedSpaceScores, columnCorrelations, jointCovariance, ccaFromCovariances, type CcaFit, type CcaOptions, type SharedScoring, type Whitening } from './analysis/cca.js';
export { fitKcca, kccaProjectX, kccaProjectY, type KccaFit, type KccaOptions, type LabelKernel } from './analysis/kcca.js';
export { Dcca, DccaConfigSchema, createDcca, correlationObjective, type CorrelationObjective } from './models/dcca.js';
export { Devise, DeviseConfigSchema, createDevise, DEVISE_SIMILARITIES, type DeviseSimilarity } from './models/devise.js';
export { Use, UseConfigSchema, createUse } from './models/use.js';
export { coordinateRun, coordinateMethod, COORDINATE_METHODS, type CoordinateOptions, type CoordinateReport } from './analysis/coordinated.js';
export { Tvae, TvaeConfigSchema, tripletLossOnMeans } from './models/tvae.js';
export { sampleTriplets, batchTriplets, checkTriplets, TRIPLET_MINING, type Triplets, type TripletMining } from './data/triplets.js';
export { tripletAccuracy, retrievalMeasures, type TripletAccuracy, type RetrievalMeasures } from './eval/metric-learning.js';
export { latentArithmetic, operandPoint, parseOperand, type Operand, type ArithmeticResult } from './runs/latent-arithmetic.js';
export { lrFactor, LR_SCHEDULES, type LrSchedule } from './train/schedule.js';
