//! JSON request bodies as the API takes them: an object, nothing else.
//!
//! serde reads a struct from a JSON array as readily as from an object (`[null, null]` fills
//! the first two fields in order), so axum's `Json<T>` would take a body the API description
//! refuses and that no client means. [`JsonObject`] reads the body as an object first (415
//! without a JSON content type, 400 for a syntax error, 413 over the limit, 422 for any other
//! JSON value) and only then as `T` (422 naming the field).

use axum::extract::{FromRequest, Request};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::problem::Problem;

/// A JSON object body read as `T`; rejections are problem documents.
#[derive(Debug, Clone)]
pub struct JsonObject<T>(pub T);

impl<T, S> FromRequest<S> for JsonObject<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let Json(object) = Json::<Map<String, Value>>::from_request(request, state).await?;
        from_object(object).map(JsonObject)
    }
}

/// `T` from a JSON object, or 422 naming the field that does not fit.
///
/// # Errors
/// 422 with serde's reason and the path to the offending field.
pub fn from_object<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, Problem> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner();
        Problem::unprocessable(if path == "." {
            format!("Failed to deserialize the JSON body into the target type: {reason}")
        } else {
            format!("Failed to deserialize the JSON body into the target type: {path}: {reason}")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Patch {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        level: Option<String>,
    }

    async fn read(body: &str) -> Result<JsonObject<Patch>, Problem> {
        let request = Request::builder()
            .method("PATCH")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        JsonObject::<Patch>::from_request(request, &()).await
    }

    #[tokio::test]
    async fn an_array_is_not_taken_for_a_struct() {
        // serde_json alone fills the struct from the array, field by field.
        assert!(serde_json::from_str::<Patch>("[null, null]").is_ok());
        for body in ["[null, null]", "null", "\"name\"", "7"] {
            assert_eq!(read(body).await.unwrap_err().status, 422, "{body}");
        }
        assert!(read(r#"{"name": "a"}"#).await.is_ok());
    }

    #[tokio::test]
    async fn a_field_of_the_wrong_type_is_named() {
        let problem = read(r#"{"name": 5}"#).await.unwrap_err();
        assert_eq!(problem.status, 422);
        assert!(problem.detail.contains("name"), "{}", problem.detail);
        assert_eq!(read("{").await.unwrap_err().status, 400);
    }
}
