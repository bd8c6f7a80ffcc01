//! The wire types of OpenAI's Files, Batch and Videos APIs, shared by the client and the sandbox.
//!
//! Unknown enum values deserialize to `Unknown` instead of failing, so a server that adds a
//! status does not crash a night; callers treat `Unknown` as "not finished yet".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"object":"list","data":[…],"first_id","last_id","has_more"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<T>,
    #[serde(default)]
    pub first_id: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
    #[serde(default)]
    pub has_more: bool,
}

fn list_object() -> String {
    "list".into()
}

/// The error body every endpoint answers with: `{"error": {message, type, param, code}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default, deserialize_with = "lenient::opt_text")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_text")]
    pub param: Option<String>,
    /// A string in OpenAI's contract; an integer on vllm-omni, absent on SGLang.
    #[serde(default, deserialize_with = "lenient::opt_text")]
    pub code: Option<String>,
}

/// Servers that copy OpenAI's shapes do not always copy their types: a code may be an
/// integer, seconds a number, progress a float. These read either.
pub mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }

    impl Scalar {
        fn text(self) -> String {
            match self {
                Scalar::Text(t) => t,
                Scalar::Int(n) => n.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            }
        }
    }

    /// A string, number or boolean as text; `null` (or anything else) as `None`.
    pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<serde_json::Value>::deserialize(d)?
            .and_then(|v| Scalar::deserialize(v).ok())
            .map(Scalar::text))
    }

    /// [`opt_text`], empty when absent.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(opt_text(d)?.unwrap_or_default())
    }

    /// A whole number from an integer, a float or digits in text.
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Ok(opt_text(d)?
            .and_then(|t| t.parse::<f64>().ok())
            .map(|f| f.clamp(0.0, u32::MAX as f64) as u32))
    }

    /// A unix time from an integer or a float.
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(opt_text(d)?
            .and_then(|t| t.parse::<f64>().ok())
            .map(|f| f as i64))
    }

    pub fn i64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(opt_i64(d)?.unwrap_or(0))
    }
}

// ---------------------------------------------------------------- Files

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilePurpose {
    Assistants,
    Batch,
    FineTune,
    Vision,
    #[serde(rename = "user_data")]
    UserData,
    Evals,
    #[serde(rename = "batch_output")]
    BatchOutput,
    #[serde(other)]
    Unknown,
}

impl FilePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            FilePurpose::Assistants => "assistants",
            FilePurpose::Batch => "batch",
            FilePurpose::FineTune => "fine-tune",
            FilePurpose::Vision => "vision",
            FilePurpose::UserData => "user_data",
            FilePurpose::Evals => "evals",
            FilePurpose::BatchOutput => "batch_output",
            FilePurpose::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    pub id: String,
    #[serde(default = "file_object")]
    pub object: String,
    pub bytes: u64,
    pub created_at: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    pub filename: String,
    pub purpose: FilePurpose,
    #[serde(default)]
    pub status: Option<String>,
}

fn file_object() -> String {
    "file".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
    pub object: String,
    pub deleted: bool,
}

// ---------------------------------------------------------------- Batches

/// How long a provider keeps a finished batch's (or job's) videos downloadable: 24 hours.
pub const OUTPUTS_LIFETIME_SECS: i64 = 24 * 3600;

/// The only completion window the Batch API offers (a batch not done by then expires).
pub const COMPLETION_WINDOW: &str = "24h";
pub const COMPLETION_WINDOW_SECS: i64 = 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
    #[serde(other)]
    Unknown,
}

impl BatchStatus {
    /// No further change will happen: outputs (if any) can be collected.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Failed
                | BatchStatus::Completed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }

    /// The status a ledger recorded (`as_str`'s words); anything else is `Unknown`.
    pub fn parse(text: &str) -> BatchStatus {
        const ALL: [BatchStatus; 8] = [
            BatchStatus::Validating,
            BatchStatus::Failed,
            BatchStatus::InProgress,
            BatchStatus::Finalizing,
            BatchStatus::Completed,
            BatchStatus::Expired,
            BatchStatus::Cancelling,
            BatchStatus::Cancelled,
        ];
        ALL.into_iter()
            .find(|s| s.as_str() == text)
            .unwrap_or(BatchStatus::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
            BatchStatus::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchErrors {
    #[serde(default = "list_object")]
    pub object: String,
    #[serde(default)]
    pub data: Vec<BatchErrorItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    #[serde(default = "batch_object")]
    pub object: String,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: BatchStatus,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    pub created_at: i64,
    #[serde(default)]
    pub in_progress_at: Option<i64>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub finalizing_at: Option<i64>,
    #[serde(default)]
    pub completed_at: Option<i64>,
    #[serde(default)]
    pub failed_at: Option<i64>,
    #[serde(default)]
    pub expired_at: Option<i64>,
    #[serde(default)]
    pub cancelling_at: Option<i64>,
    #[serde(default)]
    pub cancelled_at: Option<i64>,
}

fn batch_object() -> String {
    "batch".into()
}

/// Per-file limits of the Batch API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_requests: usize,
    pub max_bytes: u64,
}

impl Default for BatchLimits {
    /// OpenAI's: 50,000 requests and 200 MB per input file.
    fn default() -> BatchLimits {
        BatchLimits {
            max_requests: 50_000,
            max_bytes: 200 * 1000 * 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// One line of a batch input file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchInputLine {
    pub custom_id: String,
    pub method: String,
    pub url: String,
    pub body: CreateVideo,
}

/// One line of a batch output or error file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchOutputLine {
    #[serde(default)]
    pub id: Option<String>,
    pub custom_id: String,
    #[serde(default)]
    pub response: Option<BatchResponse>,
    #[serde(default)]
    pub error: Option<BatchLineError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub status_code: u16,
    #[serde(default)]
    pub request_id: Option<String>,
    /// A video object on success, an `ErrorBody` otherwise: kept raw and decoded by the reader.
    pub body: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchLineError {
    #[serde(default)]
    pub code: Option<String>,
    pub message: String,
}

// ---------------------------------------------------------------- Videos

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
    #[serde(other)]
    Unknown,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Queued => "queued",
            VideoStatus::InProgress => "in_progress",
            VideoStatus::Completed => "completed",
            VideoStatus::Failed => "failed",
            VideoStatus::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoError {
    /// Empty where the server sends none (SGLang); an integer's digits (vllm-omni).
    #[serde(default, deserialize_with = "lenient::text")]
    pub code: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: String,
    #[serde(default = "video_object")]
    pub object: String,
    pub status: VideoStatus,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub progress: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_text")]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_text")]
    pub prompt: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_text")]
    pub size: Option<String>,
    /// A string in OpenAI's contract; some servers send a number.
    #[serde(default, deserialize_with = "lenient::opt_text")]
    pub seconds: Option<String>,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub created_at: i64,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub completed_at: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub error: Option<VideoError>,
    #[serde(default)]
    pub remixed_from_video_id: Option<String>,
}

fn video_object() -> String {
    "video".into()
}

/// A JSON `POST /videos` body, as it appears in a batch input line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVideo {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_reference: Option<InputReference>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputReference {
    FileId { file_id: String },
    ImageUrl { image_url: String },
}

/// `variant` of `GET /videos/{id}/content`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentVariant {
    Video,
    Thumbnail,
    Spritesheet,
}

impl ContentVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentVariant::Video => "video",
            ContentVariant::Thumbnail => "thumbnail",
            ContentVariant::Spritesheet => "spritesheet",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_recorded_batch_status_reads_back() {
        for text in [
            "validating",
            "in_progress",
            "cancelling",
            "cancelled",
            "completed",
        ] {
            assert_eq!(BatchStatus::parse(text).as_str(), text);
        }
        assert_eq!(BatchStatus::parse("intent"), BatchStatus::Unknown);
    }

    use super::*;

    #[test]
    fn unknown_statuses_do_not_fail_decoding() {
        let s: BatchStatus = serde_json::from_str("\"paused_for_lunch\"").unwrap();
        assert_eq!(s, BatchStatus::Unknown);
        assert!(!s.is_terminal());
        let v: VideoStatus = serde_json::from_str("\"rendering\"").unwrap();
        assert_eq!(v, VideoStatus::Unknown);
    }

    #[test]
    fn other_servers_shapes_decode() {
        // SGLang: no `code`, seconds as a string, floats for times.
        let sglang: Video = serde_json::from_str(
            r#"{"id":"0b4c","object":"video","status":"failed","seconds":"5",
                "created_at":1733000000.5,"expires_at":null,"error":{"message":"OOM"}}"#,
        )
        .unwrap();
        assert_eq!(sglang.error.unwrap().code, "");
        assert_eq!(sglang.created_at, 1733000000);
        // vllm-omni: an integer code; a number of seconds.
        let vllm: ErrorBody =
            serde_json::from_str(r#"{"error":{"message":"boom","code":500}}"#).unwrap();
        assert_eq!(vllm.error.code.as_deref(), Some("500"));
        let v: Video = serde_json::from_str(
            r#"{"id":"v","status":"queued","seconds":5,"progress":12.5,"created_at":1}"#,
        )
        .unwrap();
        assert_eq!((v.seconds.as_deref(), v.progress), (Some("5"), Some(12)));
    }

    #[test]
    fn input_reference_takes_either_shape() {
        let a: InputReference = serde_json::from_str(r#"{"file_id":"file-1"}"#).unwrap();
        assert_eq!(
            a,
            InputReference::FileId {
                file_id: "file-1".into()
            }
        );
        let b: InputReference = serde_json::from_str(r#"{"image_url":"https://x"}"#).unwrap();
        assert_eq!(
            b,
            InputReference::ImageUrl {
                image_url: "https://x".into()
            }
        );
    }

    #[test]
    fn purposes_use_the_api_spelling() {
        for p in [
            FilePurpose::FineTune,
            FilePurpose::UserData,
            FilePurpose::Batch,
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }
}
