//! Brotli for `node:zlib`, in bounded pieces: a call takes at most [`PIECE`] bytes of input
//! and gives at most [`PIECE`] bytes of output (a decoder keeps the input it has not used for
//! the next call), so no single call runs long outside the CPU watchdog's reach, and what a
//! small bomb inflates to reaches JavaScript, and its memory limit, a piece at a time. An
//! isolate holds at most [`MAX_STREAMS`] streams: their state (windows, hash tables) is
//! native memory.

use std::collections::HashMap;

use brotli::enc::encode::{
    BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct,
};
use brotli::writer::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use deno_core::{op2, OpState};
use deno_error::JsErrorBox;

/// The most input one call takes and the most output one call gives.
pub const PIECE: usize = 64 * 1024;
/// Streams an isolate may hold at once.
const MAX_STREAMS: usize = 4;

enum Stream {
    Encoder(Box<BrotliEncoderStateStruct<StandardAlloc>>),
    Decoder {
        state: Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
        /// Input taken and not decoded yet.
        pending: Vec<u8>,
        /// Decoding may give more output without more input.
        more: bool,
        ended: bool,
    },
}

/// An isolate's Brotli streams, by id.
#[derive(Default)]
pub struct BrotliStreams {
    next: u32,
    streams: HashMap<u32, Stream>,
}

/// The isolate's streams, made on first use.
fn streams(state: &mut OpState) -> &mut BrotliStreams {
    if !state.has::<BrotliStreams>() {
        state.put(BrotliStreams::default());
    }
    state.borrow_mut::<BrotliStreams>()
}

fn error(message: &str) -> JsErrorBox {
    JsErrorBox::generic(message.to_string())
}

/// A new stream: a decoder, or an encoder of `quality` (0–11) and window `lgwin` (10–24).
#[op2(fast)]
pub fn op_isola_brotli_open(
    state: &mut OpState,
    decode: bool,
    #[smi] quality: u32,
    #[smi] lgwin: u32,
) -> Result<u32, JsErrorBox> {
    let streams = streams(state);
    if streams.streams.len() >= MAX_STREAMS {
        return Err(error("too many Brotli streams open at once in this isolate"));
    }
    if quality > 11 || !(10..=24).contains(&lgwin) {
        return Err(error("Brotli quality must be 0 to 11 and the window 10 to 24"));
    }
    let stream = if decode {
        let state = BrotliState::new(
            StandardAlloc::default(),
            StandardAlloc::default(),
            StandardAlloc::default(),
        );
        Stream::Decoder { state: Box::new(state), pending: Vec::new(), more: false, ended: false }
    } else {
        let mut encoder = BrotliEncoderStateStruct::new(StandardAlloc::default());
        encoder.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, quality);
        encoder.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, lgwin);
        Stream::Encoder(Box::new(encoder))
    };
    let id = streams.next;
    streams.next = streams.next.wrapping_add(1);
    streams.streams.insert(id, stream);
    Ok(id)
}

/// Feeds at most [`PIECE`] bytes (`last`: the input ends here) and answers the output made,
/// at most [`PIECE`] bytes of it for a decoder (then `op_isola_brotli_more` says so).
#[op2]
#[buffer]
pub fn op_isola_brotli_push(
    state: &mut OpState,
    #[smi] id: u32,
    #[buffer] input: &[u8],
    last: bool,
) -> Result<Vec<u8>, JsErrorBox> {
    if input.len() > PIECE {
        return Err(error("a Brotli piece is at most 64 KiB"));
    }
    let streams = streams(state);
    let stream =
        streams.streams.get_mut(&id).ok_or_else(|| error("the Brotli stream is closed"))?;
    match stream {
        Stream::Encoder(encoder) => encode(encoder, input, last),
        Stream::Decoder { state, pending, more, ended } => {
            if *ended {
                return Ok(Vec::new());
            }
            pending.extend_from_slice(input);
            let mut available_in = pending.len();
            let mut input_offset = 0;
            let mut output = vec![0u8; PIECE];
            let mut available_out = PIECE;
            let mut output_offset = 0;
            let mut total_out = 0;
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                pending,
                &mut available_out,
                &mut output_offset,
                &mut output,
                &mut total_out,
                state,
            );
            pending.drain(..input_offset);
            output.truncate(output_offset);
            match result {
                BrotliResult::ResultSuccess => {
                    *ended = true;
                    *more = false;
                }
                BrotliResult::NeedsMoreOutput => *more = true,
                BrotliResult::NeedsMoreInput if last => {
                    return Err(error("unexpected end of file"));
                }
                BrotliResult::NeedsMoreInput => *more = false,
                BrotliResult::ResultFailure => return Err(error("Decompression failed")),
            }
            Ok(output)
        }
    }
}

fn encode(
    encoder: &mut BrotliEncoderStateStruct<StandardAlloc>,
    input: &[u8],
    last: bool,
) -> Result<Vec<u8>, JsErrorBox> {
    let operation = if last {
        BrotliEncoderOperation::BROTLI_OPERATION_FINISH
    } else {
        BrotliEncoderOperation::BROTLI_OPERATION_PROCESS
    };
    let mut available_in = input.len();
    let mut input_offset = 0;
    // Compressed output is about the input's size at most (plus a little per block).
    let mut output = vec![0u8; input.len() + 1024];
    let mut output_offset = 0;
    let mut total_out = Some(0);
    loop {
        let mut available_out = output.len() - output_offset;
        let ok = encoder.compress_stream(
            operation,
            &mut available_in,
            input,
            &mut input_offset,
            &mut available_out,
            &mut output,
            &mut output_offset,
            &mut total_out,
            &mut |_, _, _, _| (),
        );
        if !ok {
            return Err(error("Compression failed"));
        }
        let done = if last {
            encoder.is_finished()
        } else {
            available_in == 0 && !encoder.has_more_output()
        };
        if done {
            output.truncate(output_offset);
            return Ok(output);
        }
        if output_offset == output.len() {
            output.resize(output.len() + 4096, 0);
        }
    }
}

/// Whether a decoder has more output for the input it was given.
#[op2(fast)]
pub fn op_isola_brotli_more(state: &mut OpState, #[smi] id: u32) -> bool {
    matches!(streams(state).streams.get(&id), Some(Stream::Decoder { more: true, .. }))
}

/// Whether a decoder has read a whole Brotli stream.
#[op2(fast)]
pub fn op_isola_brotli_ended(state: &mut OpState, #[smi] id: u32) -> bool {
    matches!(streams(state).streams.get(&id), Some(Stream::Decoder { ended: true, .. }))
}

/// Frees a stream.
#[op2(fast)]
pub fn op_isola_brotli_close(state: &mut OpState, #[smi] id: u32) {
    streams(state).streams.remove(&id);
}
