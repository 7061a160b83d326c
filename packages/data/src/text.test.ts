import { ErrorCode } from '@tessera/protocol';
import { describe, expect, it } from 'vitest';
import type { TaskOutput, TextSchema } from './task-schema.js';
import { parseJsonLines, readTextTable, textExamples } from './text.js';
import { buildVocabulary, createTokenizer, tokens } from './tokenizer.js';

const spam: TaskOutput = { kind: 'binary', classes: ['ham', 'spam'] };

describe('tokenizer', () => {
  it('splits words on punctuation, keeps inner apostrophes, lower-cases if asked', () => {
    expect(tokens("Don't PANIC: it's 42, naïve—ok?", { kind: 'word', lowercase: true })).toEqual([
      "don't",
      'panic',
      "it's",
      '42',
      'naïve',
      'ok',
    ]);
    expect(tokens('Ab C', { kind: 'word', lowercase: false })).toEqual(['Ab', 'C']);
    // NFC: 'e' + combining acute is the precomposed 'é'.
    expect(tokens('cafe\u0301', { kind: 'word', lowercase: false })).toEqual(['café']);
    expect(tokens('a b😀', { kind: 'char', lowercase: false })).toEqual(['a', ' ', 'b', '😀']);
  });

  it('maps to ids 0 pad, 1 unknown, 2.. vocabulary, cut or padded to maxLength', () => {
    const words = createTokenizer(
      { kind: 'word', lowercase: true, vocabulary: ['free', 'money'] },
      5,
    );
    expect([...words.encode('FREE money, free beer')]).toEqual([2, 3, 2, 1, 0]);
    expect([...words.encode('free free free free free free money')]).toEqual([2, 2, 2, 2, 2]);
    expect([...words.encode('')]).toEqual([0, 0, 0, 0, 0]);
    const chars = createTokenizer({ kind: 'char', lowercase: false, vocabulary: ['a', 'b'] }, 4);
    expect([...chars.encode('abAc b')]).toEqual([2, 3, 1, 1]);
  });

  it.each([
    [
      { kind: 'word', lowercase: false, vocabulary: ['a', 'a'] },
      'tokenizer.vocabulary[1]',
      /repeated/,
    ],
    [{ kind: 'word', lowercase: false, vocabulary: [''] }, 'tokenizer.vocabulary[0]', /empty/],
    [
      { kind: 'char', lowercase: false, vocabulary: ['ab'] },
      'tokenizer.vocabulary[0]',
      /not one character/,
    ],
    [
      { kind: 'word', lowercase: true, vocabulary: ['x', 'Free'] },
      'tokenizer.vocabulary[1]',
      /capitals/,
    ],
  ] as const)(
    'refuses a vocabulary that would make ids meaningless (%#)',
    (spec, field, message) => {
      expect(() => createTokenizer({ ...spec, vocabulary: [...spec.vocabulary] }, 3)).toThrow(
        expect.objectContaining({
          code: ErrorCode.INVALID_ARGUMENT,
          data: { field },
          message: expect.stringMatching(message),
        }),
      );
    },
  );

  it('builds a vocabulary: most frequent first, ties in code-unit order, minCount and size', () => {
    const texts = ['c b a', 'a B d', 'e a c']; // first seen: c before b, e before d
    expect(buildVocabulary(texts, { kind: 'word', lowercase: true }, { size: 10 })).toEqual([
      'a',
      'b',
      'c',
      'd',
      'e',
    ]);
    expect(
      buildVocabulary(texts, { kind: 'word', lowercase: true }, { size: 2, minCount: 2 }),
    ).toEqual(['a', 'b']);
    expect(
      buildVocabulary(texts, { kind: 'word', lowercase: false }, { size: 10, minCount: 2 }),
    ).toEqual(['a', 'c']);
    expect(() => buildVocabulary(texts, { kind: 'char', lowercase: false }, { size: 0 })).toThrow(
      expect.objectContaining({ data: { field: 'size' } }),
    );
  });
});

describe('parseJsonLines', () => {
  it('reads texts and class-name labels, skipping blank lines, CRLF and a BOM', () => {
    const data = parseJsonLines(
      '\ufeff{"text":"win money","label":"spam","id":1}\r\n\r\n{"text":"hi mum","label":"ham"}\n',
      spam,
    );
    expect(data.texts).toEqual(['win money', 'hi mum']);
    expect([...data.labels]).toEqual([1, 0]);
    expect([...data.lines]).toEqual([1, 3]);
  });

  it('reads configured field names and numeric labels for regression', () => {
    const data = parseJsonLines(
      '{"body":"x","score":2.5}\n',
      { kind: 'regression' },
      {
        textField: 'body',
        labelField: 'score',
      },
    );
    expect([...data.labels]).toEqual([2.5]);
  });

  it.each([
    ['not JSON', '{"text":"a","label":"ham"}\n{"text": nope}\n', 2, undefined, /:2: not JSON/],
    ['an array', '[1,2]\n', 1, undefined, /:1: not a JSON object/],
    ['a missing text', '{"label":"ham"}\n', 1, 'text', /:1: column 'text': missing/],
    ['a text that is not a string', '{"text":5,"label":"ham"}\n', 1, 'text', /not a string/],
    [
      'an unknown class',
      '{"text":"a","label":"eggs"}\n',
      1,
      'label',
      /'eggs' is not one of the classes 'ham', 'spam'/,
    ],
    [
      'a class index instead of its name',
      '{"text":"a","label":1}\n',
      1,
      'label',
      /1 is not a class name/,
    ],
    ['a missing label', '{"text":"a"}\n', 1, 'label', /column 'label': missing/],
  ])('refuses %s, naming file and line', (_case, text, line, column, message) => {
    expect(() => parseJsonLines(text, spam, { source: 'mail.jsonl' })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(message),
        data: expect.objectContaining({ file: 'mail.jsonl', line }),
      }),
    );
    try {
      parseJsonLines(text, spam, { source: 'mail.jsonl' });
    } catch (error) {
      expect((error as { data: { column?: string } }).data.column).toBe(column);
    }
  });

  it('counts the bad lines after the first', () => {
    expect(() =>
      parseJsonLines(
        '{"text":"a","label":"x"}\n{"text":"a","label":"ham"}\n{}\n{"text":1}\n',
        spam,
        {
          source: 'm',
        },
      ),
    ).toThrow(
      expect.objectContaining({
        message:
          "m:1: column 'label': 'x' is not one of the classes 'ham', 'spam' (and 2 more bad rows)",
        data: expect.objectContaining({ moreBadRows: 2, rows: 4 }),
      }),
    );
  });
});

describe('readTextTable and textExamples', () => {
  const schema: TextSchema = {
    kind: 'text',
    maxLength: 3,
    tokenizer: { kind: 'word', lowercase: true, vocabulary: ['free', 'money'] },
  };

  it('reads a text column of a CSV (quoted, multi-line) and encodes it', () => {
    const csv = 'id,label,text\n1,spam,"Free money,\nfree!"\n2,ham,"see you"\n';
    const data = readTextTable(csv, spam, { source: 'm.csv' });
    expect(data.texts).toEqual(['Free money,\nfree!', 'see you']);
    expect([...data.lines]).toEqual([2, 4]);
    const examples = textExamples(data, schema);
    expect(examples.featureSize).toBe(3);
    expect([...examples.x]).toEqual([2, 3, 2, 1, 1, 0]);
    expect([...examples.y]).toEqual([1, 0]);
  });

  it('refuses a missing column and a bad label with file, line and column', () => {
    expect(() => readTextTable('body,label\nx,ham\n', spam, { source: 'm.csv' })).toThrow(
      expect.objectContaining({
        data: expect.objectContaining({ file: 'm.csv', line: 1, column: 'text' }),
      }),
    );
    expect(() =>
      readTextTable('text\tlabel\nx\tham\ny\tSpam\n', spam, { source: 'm.tsv' }),
    ).toThrow(
      expect.objectContaining({
        message: expect.stringMatching(/^m\.tsv:3: column 'label': 'Spam' is not one of/),
        data: expect.objectContaining({ line: 3, column: 'label' }),
      }),
    );
  });
});
