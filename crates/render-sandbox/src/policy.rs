//! What makes a video request acceptable: the catalog's model/size/seconds matrix, the prompt
//! limits, the reference image, and the content policy (a documented blocklist).
//!
//! Content policy: like the real service, prompts naming real people, public figures or
//! copyrighted characters are refused with `moderation_blocked`. The sandbox recognises the
//! names in [`BLOCKLIST`] (whole words, any case); the `moderation` fault adds random refusals.

use bytes::Bytes;

use super::error::ApiFailure;
use render_wire::api::{CreateVideo, InputReference};
use render_wire::catalog::{Catalog, Seconds, Size};

/// Defaults of `POST /videos` when a field is left out (as documented by the SDK).
pub const DEFAULT_MODEL: &str = "sora-2";
pub const DEFAULT_SIZE: &str = "720x1280";
pub const DEFAULT_SECONDS: &str = "4";

/// Names the sandbox's moderation refuses: public figures and copyrighted characters.
pub const BLOCKLIST: &[&str] = &[
    "taylor swift",
    "elon musk",
    "barack obama",
    "donald trump",
    "joe biden",
    "beyonce",
    "mickey mouse",
    "spider-man",
    "spiderman",
    "batman",
    "superman",
    "pikachu",
    "darth vader",
    "harry potter",
    "super mario",
    "homer simpson",
    "shrek",
];

/// A request that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub model: String,
    pub size: Size,
    pub seconds: u32,
    pub prompt: String,
}

/// Checks a video request; `file` resolves a `file_id` reference to its bytes.
pub fn check_request(
    request: &CreateVideo,
    catalog: &Catalog,
    file: impl Fn(&str) -> Option<Bytes>,
) -> Result<Accepted, ApiFailure> {
    let model_name = request.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let Some(model) = catalog.model(model_name) else {
        let known: Vec<String> = catalog.models().map(|m| m.name.to_string()).collect();
        return Err(ApiFailure::invalid_value("model", model_name, &known));
    };
    let size_text = request.size.as_deref().unwrap_or(DEFAULT_SIZE);
    let supported_sizes = || model.sizes.keys().map(Size::to_string).collect::<Vec<_>>();
    let size: Size = size_text
        .parse()
        .ok()
        .filter(|s| model.rate(*s).is_some())
        .ok_or_else(|| ApiFailure::invalid_value("size", size_text, &supported_sizes()))?;
    let seconds_text = request.seconds.as_deref().unwrap_or(DEFAULT_SECONDS);
    let supported_seconds = || {
        model
            .seconds
            .iter()
            .map(|s| s.api_string())
            .collect::<Vec<_>>()
    };
    let seconds: u32 = seconds_text
        .trim()
        .parse()
        .ok()
        .filter(|s| model.accepts_seconds(Seconds(*s)))
        .ok_or_else(|| ApiFailure::invalid_value("seconds", seconds_text, &supported_seconds()))?;
    let prompt = request.prompt.trim();
    if prompt.is_empty() {
        return Err(ApiFailure::invalid(
            Some("prompt"),
            Some("empty_string"),
            "Invalid 'prompt': empty string. Expected a string with minimum length 1.",
        ));
    }
    let chars = request.prompt.chars().count();
    if chars > model.max_prompt_chars {
        return Err(ApiFailure::invalid(
            Some("prompt"),
            Some("string_above_max_length"),
            format!(
                "Invalid 'prompt': string too long. Expected a string with maximum length {}, \
                 but got a string with length {chars} instead.",
                model.max_prompt_chars
            ),
        ));
    }
    match &request.input_reference {
        Some(InputReference::FileId { file_id }) => {
            let bytes = file(file_id).ok_or_else(|| {
                ApiFailure::invalid(
                    Some("input_reference"),
                    Some("invalid_value"),
                    format!("Invalid 'input_reference.file_id': no file with id '{file_id}'."),
                )
            })?;
            check_reference_image(&bytes, size)?;
        }
        Some(InputReference::ImageUrl { image_url }) if image_url.trim().is_empty() => {
            return Err(ApiFailure::invalid(
                Some("input_reference"),
                Some("empty_string"),
                "Invalid 'input_reference.image_url': empty string.",
            ));
        }
        Some(InputReference::ImageUrl { .. }) | None => {}
    }
    if names_blocked_subject(prompt) {
        return Err(ApiFailure::moderation_blocked());
    }
    Ok(Accepted {
        model: model.name.to_string(),
        size,
        seconds,
        prompt: request.prompt.clone(),
    })
}

/// A reference image must be JPEG, PNG or WebP and exactly the output size.
pub fn check_reference_image(bytes: &[u8], size: Size) -> Result<(), ApiFailure> {
    use imagesize::ImageType;
    let kind = imagesize::image_type(bytes).ok();
    if !matches!(
        kind,
        Some(ImageType::Jpeg | ImageType::Png | ImageType::Webp)
    ) {
        return Err(ApiFailure::invalid(
            Some("input_reference"),
            Some("unsupported_file"),
            "Invalid 'input_reference': expected a JPEG, PNG or WebP image.",
        ));
    }
    let dims = imagesize::blob_size(bytes).map_err(|_| {
        ApiFailure::invalid(
            Some("input_reference"),
            Some("invalid_image"),
            "Invalid 'input_reference': the image could not be read.",
        )
    })?;
    if (dims.width as u64, dims.height as u64) != (u64::from(size.width), u64::from(size.height)) {
        return Err(ApiFailure::invalid(
            Some("input_reference"),
            Some("invalid_value"),
            format!(
                "Inpaint image must match the requested width and height: got {}x{}, \
                 expected {size}.",
                dims.width, dims.height
            ),
        ));
    }
    Ok(())
}

/// Whether the prompt names someone on the blocklist (whole words, any case).
pub fn names_blocked_subject(prompt: &str) -> bool {
    let lower = prompt.to_lowercase();
    BLOCKLIST.iter().any(|name| contains_phrase(&lower, name))
}

fn contains_phrase(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(model: Option<&str>, size: Option<&str>, seconds: Option<&str>) -> CreateVideo {
        CreateVideo {
            prompt: "a lighthouse at dusk".into(),
            model: model.map(Into::into),
            size: size.map(Into::into),
            seconds: seconds.map(Into::into),
            input_reference: None,
        }
    }

    fn no_files(_: &str) -> Option<Bytes> {
        None
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let ok = check_request(&request(None, None, None), &Catalog::builtin(), no_files).unwrap();
        assert_eq!(
            (ok.model.as_str(), ok.size.to_string(), ok.seconds),
            ("sora-2", "720x1280".into(), 4)
        );
    }

    #[test]
    fn the_catalog_matrix_decides() {
        let catalog = Catalog::builtin();
        let cases = [
            (Some("sora-2"), Some("1920x1080"), Some("8"), Some("size")),
            (Some("sora-2-pro"), Some("1920x1080"), Some("20"), None),
            (Some("sora-3"), None, None, Some("model")),
            (Some("sora-2"), Some("1280x720"), Some("5"), Some("seconds")),
            (
                Some("sora-2"),
                Some("1280x720"),
                Some("eight"),
                Some("seconds"),
            ),
        ];
        for (model, size, seconds, bad_param) in cases {
            let result = check_request(&request(model, size, seconds), &catalog, no_files);
            let param = result.err().and_then(|e| e.error.param);
            assert_eq!(
                param.as_deref(),
                bad_param,
                "{model:?} {size:?} {seconds:?}"
            );
        }
    }

    #[test]
    fn blocklisted_names_are_moderated_as_whole_words() {
        assert!(names_blocked_subject("Taylor Swift sings on a boat"));
        assert!(names_blocked_subject("a cameo by pikachu."));
        assert!(!names_blocked_subject("a batmanesque silhouette"));
        let mut req = request(None, None, None);
        req.prompt = "Darth Vader walks a dog".into();
        let err = check_request(&req, &Catalog::builtin(), no_files).unwrap_err();
        assert_eq!(err.error.code.as_deref(), Some("moderation_blocked"));
    }

    #[test]
    fn reference_images_must_exist_and_match_the_size() {
        let mut req = request(Some("sora-2"), Some("1280x720"), Some("4"));
        req.input_reference = Some(InputReference::FileId {
            file_id: "file-x".into(),
        });
        let err = check_request(&req, &Catalog::builtin(), no_files).unwrap_err();
        assert_eq!(err.error.param.as_deref(), Some("input_reference"));
        let err = check_request(&req, &Catalog::builtin(), |_| {
            Some(Bytes::from_static(b"text"))
        })
        .unwrap_err();
        assert_eq!(err.error.code.as_deref(), Some("unsupported_file"));
    }
}
