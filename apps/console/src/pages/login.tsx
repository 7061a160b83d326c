import { loginSchema } from '@tessera/protocol';
import { type FormEvent, useState } from 'react';
import { ApiError, api, issuesByField, setCsrfToken, type User } from '../api.js';
import { ErrorBanner, Field } from '../ui.js';

export function LoginPage(props: { onLogin: (user: User) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const checked = loginSchema.safeParse({ email, password });
    if (!checked.success) {
      setErrors(Object.fromEntries(checked.error.issues.map((i) => [i.path.join('.'), i.message])));
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const session = await api<{ user: User; csrfToken: string }>(
        'POST',
        '/auth/login',
        checked.data,
      );
      setCsrfToken(session.csrfToken);
      props.onLogin(session.user);
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? error.message : String(error));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="login">
      <h1>Tessera</h1>
      <p className="muted">Federated learning console</p>
      <form onSubmit={submit} noValidate>
        <ErrorBanner message={message} />
        <Field label="Email" name="email" error={errors['email']}>
          <input
            name="email"
            type="email"
            autoComplete="username"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
        </Field>
        <Field label="Password" name="password" error={errors['password']}>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        <button type="submit" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
