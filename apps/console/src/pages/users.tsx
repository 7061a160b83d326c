import { createUserSchema } from '@tessera/protocol';
import { type FormEvent, useState } from 'react';
import { ApiError, api, issuesByField, type Role, type User } from '../api.js';
import { ErrorBanner, Field, formatTime, useLoad } from '../ui.js';

export function UsersPage() {
  const users = useLoad(() => api<User[]>('GET', '/users'), []);
  const [values, setValues] = useState({ email: '', name: '', role: 'researcher', password: '' });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const set = (name: keyof typeof values) => (event: { target: { value: string } }) =>
    setValues((current) => ({ ...current, [name]: event.target.value }));

  const create = async (event: FormEvent) => {
    event.preventDefault();
    const checked = createUserSchema.safeParse({
      email: values.email,
      role: values.role as Role,
      password: values.password,
      ...(values.name ? { name: values.name } : {}),
    });
    if (!checked.success) {
      setErrors(Object.fromEntries(checked.error.issues.map((i) => [i.path.join('.'), i.message])));
      return;
    }
    setErrors({});
    setMessage(null);
    try {
      await api('POST', '/users', checked.data);
      setValues({ email: '', name: '', role: 'researcher', password: '' });
      users.reload();
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? error.message : String(error));
    }
  };
  const disable = async (user: User) => {
    if (!window.confirm(`Disable ${user.email}? Their sessions end now.`)) return;
    await api('POST', `/users/${user.id}/disable`).catch((e: Error) => setMessage(e.message));
    users.reload();
  };

  return (
    <section>
      <h1>Users</h1>
      <ErrorBanner message={users.error} />
      <table>
        <thead>
          <tr>
            <th>Email</th>
            <th>Name</th>
            <th>Role</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(users.value ?? []).map((user) => (
            <tr key={user.id} className={user.disabledAt ? 'revoked' : ''}>
              <td>{user.email}</td>
              <td>{user.name}</td>
              <td>{user.role}</td>
              <td>{formatTime(user.createdAt)}</td>
              <td>
                {user.disabledAt ? (
                  `disabled ${formatTime(user.disabledAt)}`
                ) : (
                  <button type="button" className="danger" onClick={() => disable(user)}>
                    Disable
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form className="card" onSubmit={create} noValidate aria-label="New user">
        <h2>New user</h2>
        <ErrorBanner message={message} />
        <Field label="Email" name="email" error={errors['email']}>
          <input name="email" type="email" value={values.email} onChange={set('email')} />
        </Field>
        <Field label="Name" name="name" error={errors['name']} hint="optional">
          <input name="name" value={values.name} onChange={set('name')} />
        </Field>
        <Field label="Role" name="role" error={errors['role']}>
          <select name="role" value={values.role} onChange={set('role')}>
            <option value="researcher">researcher (read and export)</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <Field label="Initial password" name="password" error={errors['password']}>
          <input
            name="password"
            type="password"
            autoComplete="new-password"
            value={values.password}
            onChange={set('password')}
          />
        </Field>
        <button type="submit">Create user</button>
      </form>
    </section>
  );
}
