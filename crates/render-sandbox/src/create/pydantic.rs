//! How FastAPI and pydantic word a refused request body, for the dialects served by Python
//! servers (SGLang, vllm-omni): the 422's shape, `str(ValidationError)`, lax integers, and
//! Python's names and `repr` of JSON values.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::ApiFailure;

/// A pydantic validation error of one field, as `str(ValidationError)` writes it.
pub(super) struct PydanticError {
    pub field: &'static str,
    pub kind: &'static str,
    pub msg: &'static str,
    pub input: Value,
}

/// FastAPI's 422 with every validation error.
pub(super) fn unprocessable(errors: Vec<Value>) -> ApiFailure {
    let message = errors
        .iter()
        .filter_map(|e| e["msg"].as_str())
        .collect::<Vec<_>>()
        .join("; ");
    ApiFailure::verbatim(
        StatusCode::UNPROCESSABLE_ENTITY,
        message,
        json!({ "detail": errors }),
    )
}

pub(super) fn field_missing(name: &str) -> Value {
    json!({"type": "missing", "loc": ["body", name], "msg": "Field required", "input": null})
}

/// FastAPI's error for text sent where a `File` parameter wants an upload.
pub(super) fn not_an_upload(name: &str, text: &str) -> Value {
    json!({
        "type": "value_error",
        "loc": ["body", name],
        "msg": "Value error, Expected UploadFile, received: <class 'str'>",
        "input": text,
        "ctx": {"error": {}},
    })
}

/// Pydantic's lax `int`: integers, integral floats and numeric strings.
pub(super) fn pydantic_int(value: &Value) -> Result<i64, (&'static str, &'static str)> {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            (None, Some(f)) if f.fract() == 0.0 => Ok(f as i64),
            _ => Err((
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )),
        },
        Value::String(text) => text.trim().parse::<i64>().map_err(|_| {
            (
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
        }),
        _ => Err(("int_type", "Input should be a valid integer")),
    }
}

/// `str(ValidationError)` of pydantic 2.
pub(super) fn pydantic_message(errors: &[PydanticError]) -> String {
    let count = match errors.len() {
        1 => "1 validation error".to_string(),
        n => format!("{n} validation errors"),
    };
    let mut text = format!("{count} for VideoGenerationsRequest");
    for e in errors {
        text.push_str(&format!(
            "\n{}\n  {} [type={}, input_value={}, input_type={}]\n    For further information \
             visit https://errors.pydantic.dev/2.12/v/{}",
            e.field,
            e.msg,
            e.kind,
            py_repr(&e.input),
            py_type(&e.input),
            e.kind
        ));
    }
    text
}

/// Python's name for the type a JSON value decodes to.
pub(super) fn py_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's `repr` of a JSON value.
fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pydantic_errors_read_like_pydantic() {
        let errors = [PydanticError {
            field: "input_reference",
            kind: "string_type",
            msg: "Input should be a valid string",
            input: json!({"file_id": "file-1"}),
        }];
        let text = pydantic_message(&errors);
        assert!(text.starts_with("1 validation error for VideoGenerationsRequest\ninput_reference\n  Input should be a valid string [type=string_type, input_value={'file_id': 'file-1'}, input_type=dict]"), "{text}");
    }

    #[test]
    fn lax_integers_accept_numeric_strings() {
        assert_eq!(pydantic_int(&json!(8)), Ok(8));
        assert_eq!(pydantic_int(&json!("8")), Ok(8));
        assert_eq!(pydantic_int(&json!(8.0)), Ok(8));
        assert!(pydantic_int(&json!(8.5)).is_err());
        assert!(pydantic_int(&json!("eight")).is_err());
        assert!(pydantic_int(&json!(true)).is_err());
    }
}
