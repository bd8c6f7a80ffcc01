//! Reading `POST /v1/videos` the way each server does ([`CreateRules`]): which bodies it takes,
//! how it reads `seconds`, `size`, `model` and the reference image, and what it refuses.
//!
//! - OpenAI: JSON (`input_reference: {"file_id"}` of an uploaded file, or `{"image_url"}`) or
//!   multipart with the image; the catalog's matrix and the content policy decide.
//! - LiteLLM: OpenAI's rules behind the proxy, except that a JSON `input_reference` (any value)
//!   breaks it: 400 "Invalid request format: 'dict' object has no attribute 'read'".
//! - SGLang: JSON (pydantic: `input_reference` a string, `seconds` an integer or numeric
//!   string; a wrong type is a 400 "Invalid request body: …") or multipart (FastAPI forms: a
//!   wrong type is a 422 with `detail` a list). `model` is echoed, any `WxH` is accepted,
//!   `seconds` echoes `round(num_frames / fps)` (fps 24 unless sent).
//! - vllm-omni: multipart only (JSON is a 422: `prompt` missing from the form); `seconds` and
//!   `size` must match `^[1-9]\d*$` / `^\d+x\d+$` (422); `model` must be the served one (400
//!   "Model mismatch"); `image_reference` is JSON text, `{"file_id"}` "not supported yet".

mod pydantic;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::dialect::CreateRules;
use super::engine::file_bytes;
use super::error::ApiFailure;
use super::files::{missing, multipart_error};
use super::media::VideoSpec;
use super::policy::{self, DEFAULT_SECONDS, DEFAULT_SIZE};
use super::state::{SandboxState, lock, video_seed};
use pydantic::{
    PydanticError, field_missing, not_an_upload, py_type, pydantic_int, pydantic_message,
    unprocessable,
};
use render_wire::api::{CreateVideo, InputReference};
use render_wire::catalog::Size;

/// A request the server accepted: what it renders and what its video object echoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The `model` the video object shows.
    pub model: String,
    pub prompt: String,
    /// The size and length rendered.
    pub size: Size,
    pub seconds: u32,
    /// `size` and `seconds` as the video object shows them.
    pub size_echo: Option<String>,
    pub seconds_echo: String,
}

impl Accepted {
    /// What decides the bytes of the video `video_id` made of this request.
    pub fn spec(&self, state: &SandboxState, video_id: &str) -> VideoSpec {
        video_spec(
            state,
            video_id,
            self.prompt.clone(),
            self.size,
            self.seconds,
        )
    }
}

/// What decides a video's bytes, on the direct lane and in a batch alike: the sandbox's seed
/// and the video's id, the request's prompt, size and length, the configured file size.
pub fn video_spec(
    state: &SandboxState,
    video_id: &str,
    prompt: String,
    size: Size,
    seconds: u32,
) -> VideoSpec {
    VideoSpec {
        seed: video_seed(state.config.seed, video_id),
        prompt,
        size,
        seconds,
        total_bytes: state.config.video_bytes,
    }
}

/// One field of a multipart form.
#[derive(Clone, Debug)]
enum FormValue {
    Text(String),
    File(Bytes),
}

#[derive(Clone, Debug, Default)]
struct Form(Vec<(String, FormValue)>);

impl Form {
    fn get(&self, name: &str) -> Option<&FormValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn text(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(FormValue::Text(text)) => Some(text),
            _ => None,
        }
    }
}

/// The body of a create request.
enum Body {
    Json(Bytes),
    Form(Form),
}

/// Reads and checks a create request by the configured server's rules.
pub async fn accept(state: &Arc<SandboxState>, request: Request) -> Result<Accepted, ApiFailure> {
    let body = read_body(state, request).await?;
    match state.profile.create {
        CreateRules::OpenAi => openai(state, body),
        CreateRules::Litellm => {
            if let Body::Json(bytes) = &body {
                refuse_json_reference(bytes)?;
            }
            openai(state, body)
        }
        CreateRules::Sglang => match body {
            Body::Json(bytes) => sglang_json(state, &bytes),
            Body::Form(form) => sglang_form(state, &form),
        },
        CreateRules::VllmOmni => match body {
            Body::Json(_) => Err(unprocessable(vec![field_missing("prompt")])),
            Body::Form(form) => vllm_form(state, &form),
        },
    }
}

async fn read_body(state: &Arc<SandboxState>, request: Request) -> Result<Body, ApiFailure> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiFailure::invalid(None, None, e.to_string()))?;
        return Ok(Body::Json(bytes));
    }
    let mut multipart = Multipart::from_request(request, state).await?;
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let value = if field.file_name().is_some() {
            FormValue::File(field.bytes().await.map_err(multipart_error)?)
        } else {
            FormValue::Text(field.text().await.map_err(multipart_error)?)
        };
        form.0.push((name, value));
    }
    Ok(Body::Form(form))
}

/// OpenAI's service (also behind LiteLLM): the catalog and the content policy decide.
fn openai(state: &SandboxState, body: Body) -> Result<Accepted, ApiFailure> {
    let (request, image) = match body {
        Body::Json(bytes) => {
            let request: CreateVideo = serde_json::from_slice(&bytes).map_err(|e| {
                ApiFailure::invalid(
                    None,
                    None,
                    format!("We could not parse the JSON body of your request: {e}"),
                )
            })?;
            (request, None)
        }
        Body::Form(form) => openai_form(&form)?,
    };
    let now = state.clock.now();
    let store = lock(&state.store);
    let accepted = policy::check_request(&request, &state.config.catalog, |id| {
        file_bytes(&store, id, now)
    })?;
    drop(store);
    if let Some(image) = &image {
        policy::check_reference_image(image, accepted.size)?;
    }
    Ok(Accepted {
        size_echo: Some(accepted.size.to_string()),
        seconds_echo: accepted.seconds.to_string(),
        model: accepted.model,
        prompt: accepted.prompt,
        size: accepted.size,
        seconds: accepted.seconds,
    })
}

fn openai_form(form: &Form) -> Result<(CreateVideo, Option<Bytes>), ApiFailure> {
    let mut request = CreateVideo {
        prompt: String::new(),
        model: None,
        size: None,
        seconds: None,
        input_reference: None,
    };
    let mut prompt = None;
    let mut image = None;
    for (name, value) in &form.0 {
        let text = match value {
            FormValue::File(bytes) if name == "input_reference" => {
                image = Some(bytes.clone());
                continue;
            }
            FormValue::File(_) => continue,
            FormValue::Text(text) => text.clone(),
        };
        match name.as_str() {
            "prompt" => prompt = Some(text),
            "model" => request.model = Some(text),
            "size" => request.size = Some(text),
            "seconds" => request.seconds = Some(text),
            "input_reference[file_id]" => {
                request.input_reference = Some(InputReference::FileId { file_id: text })
            }
            "input_reference[image_url]" => {
                request.input_reference = Some(InputReference::ImageUrl { image_url: text })
            }
            _ => {}
        }
    }
    request.prompt = prompt.ok_or_else(|| missing("prompt"))?;
    Ok((request, image))
}

/// LiteLLM hands a JSON `input_reference` to code that reads it as a file.
fn refuse_json_reference(bytes: &[u8]) -> Result<(), ApiFailure> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    match body.get("input_reference") {
        None | Some(Value::Null) => Ok(()),
        Some(value) => {
            let message = format!(
                "Invalid request format: '{}' object has no attribute 'read'",
                py_type(value)
            );
            let body = json!({
                "error": {"message": message, "type": "invalid_request_error", "param": null, "code": "400"}
            });
            Err(ApiFailure::verbatim(StatusCode::BAD_REQUEST, message, body))
        }
    }
}

/// SGLang's JSON body: pydantic's `VideoGenerationsRequest(**payload)`, any failure a 400.
fn sglang_json(state: &SandboxState, bytes: &[u8]) -> Result<Accepted, ApiFailure> {
    // Like `await request.json()` falling back to `{}`.
    let payload = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let mut errors = Vec::new();
    let whole = Value::Object(payload.clone());
    let string = |field: &'static str, errors: &mut Vec<PydanticError>| match payload.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => {
            errors.push(PydanticError {
                field,
                kind: "string_type",
                msg: "Input should be a valid string",
                input: other.clone(),
            });
            None
        }
    };
    let prompt = match payload.get("prompt") {
        None => {
            errors.push(PydanticError {
                field: "prompt",
                kind: "missing",
                msg: "Field required",
                input: whole.clone(),
            });
            None
        }
        Some(_) => string("prompt", &mut errors),
    };
    // Any string (a path, URL, base64 or `data:` URL) is a reference; only its type is checked.
    let _reference = string("input_reference", &mut errors);
    let model = string("model", &mut errors);
    let size = string("size", &mut errors);
    let mut integer = |field: &'static str| match payload.get(field) {
        None | Some(Value::Null) => None,
        Some(value) => match pydantic_int(value) {
            Ok(n) => Some(n),
            Err((kind, msg)) => {
                errors.push(PydanticError {
                    field,
                    kind,
                    msg,
                    input: value.clone(),
                });
                None
            }
        },
    };
    let seconds = integer("seconds");
    let fps = integer("fps");
    let num_frames = integer("num_frames");
    if !errors.is_empty() {
        return Err(ApiFailure::detail(
            StatusCode::BAD_REQUEST,
            format!("Invalid request body: {}", pydantic_message(&errors)),
        ));
    }
    sglang_accept(
        state,
        prompt.unwrap_or_default(),
        model,
        size,
        // The model's default: 4 unless sent.
        Some(seconds.unwrap_or(4)),
        fps,
        num_frames,
    )
}

/// SGLang's multipart body: FastAPI's `Form`/`File` parameters (a wrong type is a 422).
fn sglang_form(state: &SandboxState, form: &Form) -> Result<Accepted, ApiFailure> {
    let prompt = form.text("prompt").unwrap_or_default().to_string();
    if prompt.is_empty() {
        return Err(ApiFailure::detail(
            StatusCode::BAD_REQUEST,
            "prompt is required",
        ));
    }
    let mut errors = Vec::new();
    let mut integer = |name: &'static str| {
        let text = form.text(name)?;
        match text.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(json!({
                    "type": "int_parsing",
                    "loc": ["body", name],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": text,
                }));
                None
            }
        }
    };
    let seconds = integer("seconds");
    let fps = integer("fps");
    let num_frames = integer("num_frames");
    if let Some(FormValue::Text(text)) = form.get("input_reference") {
        errors.push(not_an_upload("input_reference", text));
    }
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    if let Some(FormValue::File(image)) = form.get("input_reference")
        && !is_image(image)
    {
        return Err(ApiFailure::detail(
            StatusCode::BAD_REQUEST,
            "Failed to process image source: cannot identify image file",
        ));
    }
    sglang_accept(
        state,
        prompt,
        form.text("model").map(str::to_string),
        form.text("size").map(str::to_string),
        // `form_value("seconds", seconds) or 4`: a 0 is the default too.
        Some(seconds.filter(|s| *s != 0).unwrap_or(4)),
        fps,
        num_frames,
    )
}

fn sglang_accept(
    state: &SandboxState,
    prompt: String,
    model: Option<String>,
    size: Option<String>,
    seconds: Option<i64>,
    fps: Option<i64>,
    num_frames: Option<i64>,
) -> Result<Accepted, ApiFailure> {
    let bad = |message: &str| ApiFailure::detail(StatusCode::BAD_REQUEST, message);
    let size = match size.as_deref().map(str::trim) {
        None | Some("") => default_size(),
        Some(text) => text
            .to_lowercase()
            .replace(' ', "")
            .parse::<Size>()
            .map_err(|_| bad("size must be formatted as positive WIDTHxHEIGHT"))?,
    };
    let fps = fps.filter(|f| *f != 0).unwrap_or(24);
    if fps < 0 {
        return Err(bad("fps must be positive"));
    }
    let num_frames = num_frames.unwrap_or(fps * seconds.unwrap_or(4));
    if num_frames <= 0 {
        return Err(bad("num_frames must be positive"));
    }
    let seconds = (num_frames as f64 / fps as f64).round() as i64;
    let model = model
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| first_served(state));
    Ok(Accepted {
        model,
        prompt,
        size,
        seconds: seconds.clamp(1, u32::MAX as i64) as u32,
        size_echo: Some(size.to_string()),
        seconds_echo: seconds.to_string(),
    })
}

/// vllm-omni's form (`_parse_video_form`).
fn vllm_form(state: &SandboxState, form: &Form) -> Result<Accepted, ApiFailure> {
    let mut errors = Vec::new();
    let prompt = form.text("prompt");
    if prompt.is_none() {
        errors.push(field_missing("prompt"));
    }
    let mut pattern = |name: &'static str, regex: &'static str, ok: fn(&str) -> bool| {
        let text = form.text(name)?;
        if ok(text) {
            return Some(text.to_string());
        }
        errors.push(json!({
            "type": "string_pattern_mismatch",
            "loc": ["body", name],
            "msg": format!("String should match pattern '{regex}'"),
            "input": text,
            "ctx": {"pattern": regex},
        }));
        None
    };
    let seconds = pattern("seconds", r"^[1-9]\d*$", |t| {
        t.starts_with(|c: char| ('1'..='9').contains(&c)) && t.chars().all(|c| c.is_ascii_digit())
    });
    let size = pattern("size", r"^\d+x\d+$", |t| {
        t.split_once('x').is_some_and(|(w, h)| {
            !w.is_empty()
                && !h.is_empty()
                && w.chars().all(|c| c.is_ascii_digit())
                && h.chars().all(|c| c.is_ascii_digit())
        })
    });
    if let Some(FormValue::Text(text)) = form.get("input_reference") {
        errors.push(not_an_upload("input_reference", text));
    }
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    let bad = |message: &str| ApiFailure::detail(StatusCode::BAD_REQUEST, message);
    let image_reference = match form.text("image_reference").filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Value>(text).map_err(|_| bad("Invalid JSON in form field."))?,
        ),
    };
    let upload = match form.get("input_reference") {
        Some(FormValue::File(bytes)) => Some(bytes),
        _ => None,
    };
    if upload.is_some() && image_reference.is_some() {
        return Err(bad(
            "Provide only one of input_reference, image_reference, or video_reference when \
             using input_reference; image_reference and video_reference may be combined.",
        ));
    }
    let served = state.served_models();
    let model = form.text("model").map(str::to_string);
    if let Some(model) = &model
        && !served.contains(model)
    {
        return Err(bad(&format!(
            "Model mismatch: request specifies '{model}' but server is running '{}'.",
            served.join(", ")
        )));
    }
    if let Some(reference) = &image_reference {
        if reference.get("file_id").is_some() {
            return Err(bad(
                "Invalid image_reference: file_id is not supported yet.",
            ));
        }
        if !reference.get("image_url").is_some_and(Value::is_string) {
            return Err(bad("Invalid input reference."));
        }
    }
    if let Some(image) = upload
        && !is_image(image)
    {
        return Err(bad("Invalid input reference."));
    }
    let rendered_size = size
        .as_deref()
        .and_then(|s| s.parse::<Size>().ok())
        .unwrap_or_else(default_size);
    let rendered_seconds = seconds
        .as_deref()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(4);
    Ok(Accepted {
        // The video object names the model the server runs, whatever was sent.
        model: model.unwrap_or_else(|| first_served(state)),
        prompt: prompt.unwrap_or_default().to_string(),
        size: rendered_size,
        seconds: rendered_seconds,
        size_echo: size,
        seconds_echo: seconds.unwrap_or_else(|| DEFAULT_SECONDS.to_string()),
    })
}

fn default_size() -> Size {
    DEFAULT_SIZE.parse().expect("the default size parses")
}

fn first_served(state: &SandboxState) -> String {
    state
        .served_models()
        .into_iter()
        .next()
        .unwrap_or_else(|| policy::DEFAULT_MODEL.to_string())
}

fn is_image(bytes: &[u8]) -> bool {
    use imagesize::ImageType;
    matches!(
        imagesize::image_type(bytes).ok(),
        Some(ImageType::Jpeg | ImageType::Png | ImageType::Webp)
    )
}
