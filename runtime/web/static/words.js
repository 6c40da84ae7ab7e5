// What the API's codes mean, in words a person understands.

export const STATUS = {
  uploading: "Uploading",
  processing: "Making thumbnails",
  analyzing: "Reading the image",
  indexing: "Making it searchable",
  ready: "Ready",
  failed: "Failed",
};

export const PENDING = new Set(["uploading", "processing", "analyzing", "indexing"]);

// Item failure reasons (`code: detail`) -> what happened and what to do.
const REASONS = {
  empty_file: "The file is empty (0 bytes).",
  not_an_image: "This file is not an image.",
  unsupported_format: "This kind of image is not supported. Use JPEG, PNG, WebP, GIF or HEIC.",
  undecodable_image: "The image could not be read; the file looks damaged.",
  truncated_image:
    "The file is incomplete: the image stops part-way. Upload it again from the original.",
  decompression_bomb: "The image has too many pixels to process safely.",
  corrupt_metadata: "The image's metadata (EXIF) is damaged, so it could not be read safely.",
  file_too_large: "The file is larger than the upload limit.",
  image_too_large: "The image is too large to process.",
  upload_abandoned: "The file never arrived (the upload was interrupted). Try again.",
  processing_timeout: "Processing took too long and was stopped. Try again.",
  missing_derivative: "The image's working copy was missing. Try analyzing it again.",
  malformed_model_output: "The analysis came back unusable. Try analyzing it again.",
  model_auth_failed: "The analysis service is not set up (no API key).",
  empty_image: "There was no image to analyze.",
  invalid_image: "The image could not be read for analysis.",
  duplicate_item: "Already in your collection: the same image was uploaded before.",
};

export function failureText(failure) {
  const reason = failure?.reason ?? "";
  const code = reason.split(":")[0].trim();
  if (REASONS[code]) return REASONS[code];
  if (!reason) return "Processing failed.";
  return `Processing failed (${reason}).`;
}

// API error codes met while uploading -> words.
const UPLOAD_ERRORS = {
  upload_too_large: "The file is larger than the upload limit.",
  payload_too_large: "The file is larger than the upload limit.",
  unsupported_media_type: "This kind of file cannot be uploaded. Use JPEG, PNG, WebP, GIF or HEIC.",
  rate_limited: "Too many uploads at once; wait a moment and try again.",
};

export function uploadErrorText(error) {
  if (UPLOAD_ERRORS[error.code]) return UPLOAD_ERRORS[error.code];
  if (error.code === "validation_error" && error.details?.length) {
    return `Not accepted: ${error.details.map((d) => d.message).join("; ")}.`;
  }
  return error.message;
}

export function isDuplicate(item) {
  return (item?.failure?.reason ?? "").split(":")[0].trim() === "duplicate_item";
}

/** The id of the earlier item a duplicate's failure names ("… is item <id>"), if any. */
export function duplicateOf(item) {
  return /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(
    item?.failure?.reason ?? "",
  )?.[1];
}

/** Relevance in words, and a 0..1 value for its bar, on the mode's score scale. */
export function relevance(mode, score) {
  // keyword [0, 1] share of the query found; hybrid (0, 1] fused rank; semantic cosine [-1, 1]
  const value = mode === "semantic" ? Math.max(0, Math.min(1, (score - 0.2) / 0.6)) : score;
  const words = value >= 0.75 ? "Strong match" : value >= 0.45 ? "Good match" : "Weaker match";
  return { value: Math.max(0.05, Math.min(1, value)), words };
}

const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function when(iso) {
  return iso ? DATE.format(new Date(iso)) : "";
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function label(key) {
  const words = key.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}
