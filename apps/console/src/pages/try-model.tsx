import { drawingToMnist, rgbaToGrayscale } from '@tessera/data/browser';
import { useEffect, useRef, useState } from 'react';
import { api, type Prediction } from '../api.js';
import { ErrorBanner } from '../ui.js';

const SIZE = 280;

/**
 * "Try the model": draw a digit (white on black, like MNIST) and the run's global model
 * classifies it. The drawing is prepared here as MNIST's digits were made (@tessera/data's mnist-digit.ts:
 * the ink's box scaled into 20x20, centred by mass in 28x28) and sent as the 784 values the
 * model reads; a blank canvas is not sent.
 */
export function TryModel(props: { runId: string; latestRound: number }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const drawing = useRef(false);
  const [round, setRound] = useState<string>('latest');
  const [prediction, setPrediction] = useState<Prediction | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const clear = () => {
    const context = canvas.current?.getContext('2d');
    if (!context) return;
    context.fillStyle = '#000';
    context.fillRect(0, 0, SIZE, SIZE);
    setPrediction(null);
    setError(null);
  };
  useEffect(clear, []);

  const point = (event: React.PointerEvent<HTMLCanvasElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) / box.width) * SIZE,
      y: ((event.clientY - box.top) / box.height) * SIZE,
    };
  };
  const stroke = (event: React.PointerEvent<HTMLCanvasElement>, start: boolean) => {
    const context = canvas.current?.getContext('2d');
    if (!context) return;
    const { x, y } = point(event);
    context.strokeStyle = '#fff';
    context.lineWidth = 20;
    context.lineCap = 'round';
    context.lineJoin = 'round';
    if (start) {
      context.beginPath();
      context.moveTo(x, y);
    }
    context.lineTo(x, y);
    context.stroke();
  };

  const predict = async () => {
    const context = canvas.current?.getContext('2d');
    if (!context) return;
    setError(null);
    const drawn = context.getImageData(0, 0, SIZE, SIZE);
    const pixels = drawingToMnist(rgbaToGrayscale(drawn.data, SIZE, SIZE));
    if (!pixels) {
      setPrediction(null);
      setError('Draw a digit first: the canvas is blank.');
      return;
    }
    setBusy(true);
    try {
      const query = round === 'latest' ? '' : `?round=${round}`;
      const body = { pixels: Array.from(pixels) };
      setPrediction(await api<Prediction>('POST', `/runs/${props.runId}/predict${query}`, body));
    } catch (cause) {
      setError((cause as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const best = prediction ? Math.max(...prediction.probabilities) : 0;
  return (
    <div className="card try-model" data-testid="try-model">
      <h2>Try the model</h2>
      <p className="muted">Draw a digit, then ask the global model what it is.</p>
      <div className="try-layout">
        <canvas
          ref={canvas}
          width={SIZE}
          height={SIZE}
          data-testid="digit-canvas"
          onPointerDown={(event) => {
            drawing.current = true;
            event.currentTarget.setPointerCapture(event.pointerId);
            stroke(event, true);
          }}
          onPointerMove={(event) => {
            if (drawing.current) stroke(event, false);
          }}
          onPointerUp={() => {
            drawing.current = false;
          }}
        />
        <div>
          <label className="field">
            <span className="label">Model of round</span>
            <select value={round} onChange={(e) => setRound(e.target.value)} name="predict-round">
              <option value="latest">latest</option>
              {Array.from({ length: props.latestRound + 1 }, (_, k) => props.latestRound - k).map(
                (n) => (
                  <option key={n} value={String(n)}>
                    {n === 0 ? '0 (initial)' : n}
                  </option>
                ),
              )}
            </select>
          </label>
          <div className="actions">
            <button type="button" onClick={predict} disabled={busy}>
              Predict
            </button>
            <button type="button" onClick={clear}>
              Clear
            </button>
          </div>
          <ErrorBanner message={error} />
          {prediction ? (
            <div data-testid="prediction">
              <p className="prediction">
                <span className="digit" data-testid="predicted-class">
                  {prediction.class}
                </span>
                <span className="muted">
                  {(best * 100).toFixed(1)}% · model of round {prediction.round}
                </span>
              </p>
              <div className="bars">
                {prediction.probabilities.map((p, digit) => (
                  <div
                    // biome-ignore lint/suspicious/noArrayIndexKey: the index is the digit
                    key={digit}
                    className={digit === prediction.class ? 'bar-row best' : 'bar-row'}
                  >
                    <span>{digit}</span>
                    <i style={{ width: `${Math.max(p * 100, 0.5)}%` }} />
                    <span>{(p * 100).toFixed(1)}%</span>
                  </div>
                ))}
              </div>
            </div>
          ) : null}
        </div>
      </div>
    </div>
  );
}
