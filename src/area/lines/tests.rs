//! Tests of tile lists: line parsing and reading.

use super::*;
use crate::area::test_tiles::{any_input, t};
use proptest::prelude::*;

#[test]
fn lines_parse_as_render_expired_reads_them() {
    assert_eq!(
        parse_tile_line(b"12/2345/1234"),
        Ok(Some(t(12, 2345, 1234)))
    );
    assert_eq!(parse_tile_line(b"  0/0/0 \r"), Ok(Some(t(0, 0, 0))));
    assert_eq!(parse_tile_line(b""), Ok(None));
    assert_eq!(parse_tile_line(b"   \t"), Ok(None));
    assert_eq!(parse_tile_line(b"12/2345"), Err(LineError::Shape));
    assert_eq!(parse_tile_line(b"12/2345/1/2"), Err(LineError::Shape));
    assert_eq!(
        parse_tile_line(b"a/1/1"),
        Err(LineError::NotANumber("zoom"))
    );
    assert_eq!(parse_tile_line(b"3/-1/1"), Err(LineError::NotANumber("x")));
    assert_eq!(parse_tile_line(b"3/1/ 1"), Err(LineError::NotANumber("y")));
    assert_eq!(parse_tile_line(b"31/0/0"), Err(LineError::ZoomTooHigh(31)));
    assert_eq!(
        parse_tile_line(b"3/8/0"),
        Err(LineError::OutOfRange { z: 3, x: 8, y: 0 })
    );
    assert_eq!(
        parse_tile_line(b"30/1073741823/0"),
        Ok(Some(t(30, (1 << 30) - 1, 0)))
    );
    assert_eq!(
        parse_tile_line(b"1/99999999999999999999/0"),
        Err(LineError::NotANumber("x"))
    );
}

#[test]
fn bad_lines_carry_their_line_numbers() {
    let long = "9".repeat(10_000);
    let input = format!("1/0/0\n\nfoo\r\n2/3/3\n{long}\n4/4/4/4\n5/1/1");
    let items: Vec<_> = TileLines::new(input.as_bytes())
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0], Ok(t(1, 0, 0)));
    let bad = items[1].clone().unwrap_err();
    assert_eq!((bad.line_no, bad.text.as_str()), (3, "foo"));
    assert_eq!(items[2], Ok(t(2, 3, 3)));
    let too_long = items[3].clone().unwrap_err();
    assert_eq!((too_long.line_no, too_long.error), (5, LineError::TooLong));
    assert_eq!(too_long.text.len(), MAX_LINE_BYTES);
    assert_eq!(items[4].clone().unwrap_err().line_no, 6);
    assert_eq!(
        items[5],
        Ok(t(5, 1, 1)),
        "a last line without newline counts"
    );
    let mut lines = TileLines::new(input.as_bytes());
    lines.by_ref().for_each(drop);
    assert_eq!(lines.lines_read(), 7);
}

proptest! {
    #[test]
    fn the_line_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some(tile)) = parse_tile_line(&bytes) {
            prop_assert!(tile.z <= MAX_INPUT_ZOOM);
            prop_assert!(u64::from(tile.x) < 1u64 << tile.z && u64::from(tile.y) < 1u64 << tile.z);
        }
    }

    #[test]
    fn the_line_reader_never_panics_and_counts_every_line(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'/'), Just(b'1'), Just(b'0'), any::<u8>()],
            0..2000,
        ),
    ) {
        let mut lines = TileLines::new(bytes.as_slice());
        let mut last = 0;
        for item in lines.by_ref() {
            let line_no = match item.unwrap() {
                Ok(_) => continue,
                Err(bad) => bad.line_no,
            };
            prop_assert!(line_no > last);
            last = line_no;
        }
        let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        let trailing = u64::from(!bytes.is_empty() && bytes.last() != Some(&b'\n'));
        prop_assert_eq!(lines.lines_read(), newlines + trailing);
    }

    #[test]
    fn valid_lines_round_trip(tile in any_input()) {
        let line = format!("{}/{}/{}", tile.z, tile.x, tile.y);
        prop_assert_eq!(parse_tile_line(line.as_bytes()), Ok(Some(tile)));
    }
}
