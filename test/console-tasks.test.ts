// The console's Tasks pages in a real browser (Debian's Chromium, headless, playwright-core)
// against a real coordinator: the list with the built-ins, a task's page in words, and an
// admin's Create task form showing the API's field errors. Needs the built console.
import { taskSha256 } from '@tessera/tasks';
import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ConsoleFixture, signedInPage, useConsoleInChromium } from './console-fixtures.js';
import { flowersTask, tabularTopology } from './task-fixtures.js';

const consoleInChromium = useConsoleInChromium();
let fx: ConsoleFixture;

beforeAll(() => {
  ({ fx } = consoleInChromium);
});

const signedIn = (role: 'admin' | 'researcher'): Promise<Page> =>
  signedInPage(fx, consoleInChromium.browser, role, { timeoutMs: 30_000 });

describe('the Tasks page', () => {
  it('lists the built-in tasks for a researcher, and shows one in words with its layers', async () => {
    const page = await signedIn('researcher');
    await page.getByRole('link', { name: 'Tasks' }).click();
    const row = page.locator('[data-task="mnist-cnn@1"]');
    await row.waitFor();
    const cells = await row.locator('td').allInnerTexts();
    const stored = await fx.db.tasks.byName('mnist-cnn');
    expect(cells.slice(0, 7)).toEqual([
      'mnist-cnn',
      '1',
      'image',
      'one of 10 classes',
      '1,663,370',
      stored.sha256.slice(0, 12),
      'built-in',
    ]);
    expect(await page.locator('form[aria-label="Create task"]').count()).toBe(0);

    await row.getByRole('link', { name: 'mnist-cnn' }).click();
    await page.getByTestId('task-sha256').waitFor();
    expect(await page.getByTestId('task-sha256').textContent()).toBe(stored.sha256);
    expect(await page.getByTestId('task-input').textContent()).toBe(
      'image: 28×28, grayscale, values 0 to 1',
    );
    const layers = await page.getByTestId('task-layers').locator('tbody tr').allInnerTexts();
    expect(layers.length).toBeGreaterThanOrEqual(6);
    expect(layers.at(-1)).toMatch(/Dense\s+\[10\]\s+5,130$/);
    await page.context().close();
  });

  it("lets an admin create a task from pasted JSON, showing the API's field errors first", async () => {
    const page = await signedIn('admin');
    // Loaded by its address (a reload), not only reached through the nav.
    await page.goto(`${fx.url}/tasks`);
    const form = page.locator('form[aria-label="Create task"]');
    await form.waitFor();
    const before = (await fx.db.tasks.list()).length;

    // The model takes 5 features where the schema gives 6: refused, the field shown.
    const bad = flowersTask({ name: 'console-flowers', topology: tabularTopology(5) });
    await form.locator('textarea[name=definition]').fill(JSON.stringify(bad));
    await form.getByRole('button', { name: 'Create task' }).click();
    const error = form.locator('[data-error-for="model.topology"]');
    await error.waitFor();
    expect(await error.textContent()).toContain('[5]');
    // A schema error lists every field at fault.
    const schema = flowersTask({ name: 'console-flowers' });
    (schema['input'] as { label: string }).label = 'width';
    (schema as Record<string, unknown>)['loss'] = 'mean-squared-error';
    await form.locator('textarea[name=definition]').fill(JSON.stringify(schema));
    await form.getByRole('button', { name: 'Create task' }).click();
    await form.locator('[data-error-for="input.columns.1.name"]').waitFor();
    await form.locator('[data-error-for="loss"]').waitFor();
    expect((await fx.db.tasks.list()).length).toBe(before);

    const good = flowersTask({ name: 'console-flowers', categories: true });
    await form.locator('textarea[name=definition]').fill(JSON.stringify(good));
    await form.getByRole('button', { name: 'Create task' }).click();
    await page.waitForURL(/\/tasks\/console-flowers\/v\/1$/);
    await page.getByTestId('task-sha256').waitFor();
    expect(await page.getByTestId('task-sha256').textContent()).toBe(taskSha256(good));
    expect(await page.getByTestId('task-input').textContent()).toBe(
      'tabular: 4 columns, label "species"',
    );
    expect(await page.getByTestId('task-columns').textContent()).toContain(
      'categorical: clay, sand, loam',
    );
    expect(await page.getByTestId('task-classes').textContent()).toBe(
      'Classes: setosa, versicolor, virginica',
    );
    const layers = await page.getByTestId('task-layers').locator('tbody tr').allInnerTexts();
    expect(layers.map((line) => line.split('\t').slice(1).join(' '))).toEqual([
      'Dense [16] 112',
      'Dense [3] 51',
    ]);
    expect((await fx.db.tasks.list()).length).toBe(before + 1);
    await page.context().close();
  });
});
