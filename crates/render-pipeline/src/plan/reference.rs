//! Reference images: a shot's first frame, read once per path (header and SHA-256) and checked
//! against the shot's size.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::shotlist::{Diagnostic, Shot, ShotListInput};
use render_wire::catalog::Size;
use render_wire::key::Sha256Hex;

use super::Reference;
use super::planner::Planner;

/// What a reference image turned out to be: the reference every shot naming it shares, and its
/// pixel size.
#[derive(Clone, Debug)]
pub(super) struct ImageFacts {
    reference: Arc<Reference>,
    width: u32,
    height: u32,
}

impl Planner<'_> {
    /// The shot's reference image, checked against `size` when the size is valid.
    /// `Err` when the image has a problem (already reported).
    pub(super) fn reference(
        &mut self,
        input: &ShotListInput,
        shot: &Shot,
        size: Option<Size>,
    ) -> Result<Option<Arc<Reference>>, ()> {
        let Some(written) = &shot.reference else {
            return Ok(None);
        };
        let path = input.base_dir.join(&written.value);
        let facts = self
            .images
            .entry(path.clone())
            .or_insert_with(|| inspect_image(&path))
            .clone();
        let report = |message: String, help: &str| {
            Diagnostic::error(&input.path, written.pos, message).with_help(help)
        };
        let facts = match facts {
            Ok(facts) => facts,
            Err(problem) => {
                let help = "reference paths are relative to the shot list's folder; use a JPEG, PNG or WebP";
                self.diagnostics.push(report(problem, help));
                return Err(());
            }
        };
        if let Some(size) = size
            && (facts.width, facts.height) != (size.width, size.height)
        {
            let message = format!(
                "the reference image is {}x{} but the shot is {size}",
                facts.width, facts.height
            );
            let help =
                format!("the first frame must match the output size: resize the image to {size}");
            self.diagnostics.push(report(message, &help));
            return Err(());
        }
        Ok(Some(facts.reference))
    }
}

/// Reads an image's header (format, pixel size) and streams its bytes through SHA-256.
fn inspect_image(path: &Path) -> Result<ImageFacts, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("reference image {shown} does not exist"),
        _ => format!("cannot read reference image {shown}: {e}"),
    })?;
    let mut reader = BufReader::new(file);
    let mut header = [0u8; 64];
    let read = read_up_to(&mut reader, &mut header)
        .map_err(|e| format!("cannot read reference image {shown}: {e}"))?;
    let kind = imagesize::image_type(&header[..read])
        .map_err(|_| format!("reference {shown} is not a JPEG, PNG or WebP image"))?;
    let mime = match kind {
        imagesize::ImageType::Jpeg => "image/jpeg",
        imagesize::ImageType::Png => "image/png",
        imagesize::ImageType::Webp => "image/webp",
        other => {
            let name = format!("{other:?}").to_uppercase();
            return Err(format!(
                "reference {shown} is a {name} image; the API takes JPEG, PNG or WebP"
            ));
        }
    };
    let broken = |e: &dyn std::fmt::Display| format!("reference image {shown} is damaged: {e}");
    reader.seek(SeekFrom::Start(0)).map_err(|e| broken(&e))?;
    let dims = imagesize::reader_size(&mut reader).map_err(|e| broken(&e))?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| broken(&e))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut reader, &mut hasher)
        .map_err(|e| format!("cannot read reference image {shown}: {e}"))?;
    Ok(ImageFacts {
        reference: Arc::new(Reference {
            path: path.to_path_buf(),
            sha256: Sha256Hex::from_digest(hasher.finalize().into()),
            mime,
            bytes,
        }),
        width: u32::try_from(dims.width).unwrap_or(u32::MAX),
        height: u32::try_from(dims.height).unwrap_or(u32::MAX),
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
