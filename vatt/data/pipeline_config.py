"""The data config of the real-data pipeline (`config.data` of a run reading built datasets).

Kept apart from vatt.data.pipeline (which imports TensorFlow) so configs load, and are checked,
on machines without TensorFlow.
"""

from __future__ import annotations

import ml_collections

CROPS = ("inception", "vgg")
# config.data.tokenizer: "words" (this project's vocab.txt and normalisation, vatt.data.build) or
# "dmvr" (the official pipeline's DMVR WordTokenizer rules, e.g. with the released howto100m_en.txt).
TOKENIZERS = ("words", "dmvr")
EVAL_NUM_CROPS = (1, 3)
# config.data.audio_noise_scale: the noise std is audio_noise ("absolute") or audio_noise times the
# clip's peak |amplitude| ("peak", the official VATT add_gaussian).
AUDIO_NOISE_SCALES = ("absolute", "peak")


def default_config() -> ml_collections.ConfigDict:
    """Data config (`config.data` of a run); see the field comments."""
    c = ml_collections.ConfigDict()
    c.name = "howto100m/default"  # tfds "name[/config]" or "dmvr:<glob>"
    c.split = "train"  # tfds split expression, e.g. "fold1+fold2+fold3+fold4"
    c.mixture = ""  # "howto100m/default:train:1,audioset/default:unbalanced_train:1" overrides name/split
    c.data_dir = ""
    c.modalities = "auto"  # or a comma list of video,audio,text,label
    c.num_frames = 32
    c.target_fps = 10.0
    c.frame_size = 224
    c.audio_samples = 0  # 0: num_frames / target_fps seconds at the stored sample rate (synced)
    c.crop = "inception"  # "inception" (random resized crop) | "vgg" (scale jitter + random crop)
    c.min_area = 0.08  # inception crop: area range (min_area, 1)
    c.vgg_resize = (256, 320)  # vgg crop: short side resized to U[lo, hi] before a frame_size crop
    c.flip = True
    c.color_jitter = 1.0  # strength; 0 disables
    c.color_jitter_prob = 1.0  # share of training clips jittered (official VATT / DMVR: 0.8)
    c.audio_noise = 0.0  # std of Gaussian noise added to training audio (see audio_noise_scale)
    c.audio_noise_scale = "absolute"  # "absolute" | "peak": std = audio_noise * max |clip|
    c.num_captions = 4  # K
    c.max_text_len = 16  # L
    c.caption_key = "caption"  # MSR-VTT 1k-A retrieval: "caption_1k"
    c.vocab_path = ""  # "" = the vocab.txt stored with the first source that has captions
    c.tokenizer = "words"  # "words" | "dmvr" (the official rules and vocabulary format)
    c.prepend_bos = False  # tokenizer "dmvr" only: ids start with <bos> (official VATT: False)
    c.append_eos = False  # tokenizer "dmvr" only: <eos> after the words (official VATT: False)
    c.eval_num_clips = 1
    c.eval_num_crops = 1  # 1 (centre) or 3 (start / centre / end of the long side)
    c.eval_crop_fraction = 1.0  # eval crop side as a fraction of the short side
    c.dmvr_fps = 25.0  # stored rates of DMVR records
    c.dmvr_sample_rate = 48000
    c.dmvr_num_classes = 0
    return c
